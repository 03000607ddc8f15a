"""Reproduce the defense paper's Table 1 and the new-adversarial evaluation on the embedded IDC sample.

    python scripts/defenses_table.py                        # vgg_mini, seeds 0 1 2 (docs/results/defenses.md)
    python scripts/defenses_table.py --backbone vgg16 ...   # see scripts/defenses_vgg16.py

Steps: patient-wise split (seed 0); the original classifier is trained once (seed 0); for each seed,
the four defenses are built with that seed and the initial adversarials (FGSM, BIM, PGD at --eps,
native compiled attacks) are made on the original model with that seed; Table 1 = share of the
initial adversarials that fooled the original which each defended model classifies correctly,
mean and std over seeds. Then the seed-0 defended models are attacked afresh (PGD): success
rate at --eps and median minimal Linf/L2 over an eps grid. Writes JSON and figures.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = ("fgsm", "bim", "pgd")
NAMES = ("adversarial-training", "middle-ae", "encoder", "initial-ae")


def parse(argv: list[str] | None = None, **defaults) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="vgg_mini", choices=["vgg_mini", "vgg16"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eps", type=float, default=4 / 255, help="Linf budget of initial and new adversarials")
    p.add_argument("--model-epochs", type=int, default=12, help="epochs of the original classifier")
    p.add_argument("--model-lr", type=float, default=1e-3)
    p.add_argument("--model", default=None, help="load the original classifier from this .keras file instead "
                   "of training it (it is saved to runs/defenses_<tag>/original.keras when trained)")
    p.add_argument("--n-train", type=int, default=0, help="first N training images only (0: all)")
    p.add_argument("--n-eval", type=int, default=320, help="held-out images for Table 1")
    p.add_argument("--n-new", type=int, default=64, help="held-out images attacked afresh")
    p.add_argument("--pgd-steps", type=int, default=10, help="PGD steps (initial and new adversarials)")
    p.add_argument("--train-attack-steps", type=int, default=5, help="BIM/PGD steps for adversarial training data")
    p.add_argument("--train-share", type=float, default=1 / 3,
                   help="share of the training images each attack perturbs for adversarial training")
    p.add_argument("--retrain-epochs", type=int, default=2)
    p.add_argument("--retrain-lr", type=float, default=5e-4,
                   help="adversarial retraining learning rate (the library default; use the original's for VGG16)")
    p.add_argument("--defenses", nargs="+", default=list(NAMES), choices=NAMES, help="defenses to build")
    p.add_argument("--ae-epochs", type=int, default=6, help="initial autoencoder epochs")
    p.add_argument("--ae-consistency", type=float, default=0.0,
                   help="initial autoencoder's classifier-consistency weight (0: the paper's pixel loss only)")
    p.add_argument("--tag", default="idc_vgg_mini", help="file name stem of the outputs")
    p.add_argument("--out", default=str(ROOT / "docs" / "results"))
    p.set_defaults(**defaults)
    return p.parse_args(argv)


def defense_params(args: argparse.Namespace) -> dict:
    from advkeras.attacks import iterative_params

    steps = {"bim": iterative_params(args.train_attack_steps), "pgd": iterative_params(args.train_attack_steps)}
    params = {"adversarial-training": {"attacks": ATTACKS, "eps": args.eps, "attack_params": steps,
                                       "share": args.train_share, "epochs": args.retrain_epochs,
                                       "learning_rate": args.retrain_lr},
              "middle-ae": {"epochs": 40}, "encoder": {"epochs": 60},
              "initial-ae": {"epochs": args.ae_epochs, "consistency": args.ae_consistency}}
    return {name: params[name] for name in args.defenses}


def main(argv: list[str] | None = None, **defaults) -> dict:
    args = parse(argv, **defaults)
    import numpy as np

    from advkeras.attacks import iterative_params
    from advkeras.data import load_sample, split_by_group, stratified_indices, stratified_subset
    from advkeras.evaluation.defense_figures import (plot_new_adversarial_rates, plot_new_adversarials,
                                                     plot_recovery)
    from advkeras.evaluation.robustness import defense_table, mean_std, new_adversarials
    from advkeras.models import build_classifier, evaluate_classifier, load_model, save_model, train_classifier
    from advkeras.runs import write_json

    start = time.time()
    train, val, test = split_by_group(load_sample("idc"), seed=0)
    if args.n_train:
        train = train.subset(np.random.default_rng(0).permutation(len(train))[:args.n_train])
    ev = stratified_subset(test, args.n_eval, seed=0)  # by class, spread over patients
    saved = ROOT / "runs" / f"defenses_{args.tag}" / "original.keras"
    if args.model:
        model, epochs_run = load_model(args.model), None
    elif saved.exists():
        sys.exit(f"{saved} already holds a trained original; reuse it with --model {saved.relative_to(ROOT)}, "
                 "or move it away to train a new one.")
    else:
        model = build_classifier(args.backbone, train.input_shape, train.n_classes, seed=0)
        fit = train_classifier(model, train, val, epochs=args.model_epochs, learning_rate=args.model_lr,
                               augment=True, seed=0, patience=6)
        epochs_run = len(fit.history["loss"])
        save_model(model, saved)
    original = evaluate_classifier(model, test)
    print(f"original {args.backbone}: held-out accuracy {original['accuracy']:.3f} "
          f"({epochs_run} epochs, {time.time() - start:.0f} s)", flush=True)
    attack_params = {"pgd": iterative_params(args.pgd_steps)}  # BIM keeps foolbox's default (10 steps of 0.2 eps)
    out = Path(args.out)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    result = {"command": "python scripts/" + Path(sys.argv[0]).name + " " + " ".join(sys.argv[1:]),
              "args": vars(args), "n_eval_images": len(ev), "split": {k: len(d) for k, d in (("train", train), ("val", val), ("test", test))},
              "original": {"backbone": args.backbone, "epochs_run": epochs_run, "loaded": args.model,
                           "test_accuracy": original["accuracy"]}}
    grid = tuple(e / 255 for e in (1, 2, 3, 4, 6, 8, 12, 16))
    per_seed = []
    # One seed at a time, writing the JSON after each, so a long run leaves usable partial results.
    for i, seed in enumerate(args.seeds):
        table, models_by_seed = defense_table(model, train, val, ev, defenses=defense_params(args), attacks=ATTACKS,
                                              eps=args.eps, seeds=[seed], attack_params=attack_params)
        per_seed += table["per_seed"]
        table.update(seeds=args.seeds[:i + 1], per_seed=per_seed, summary=mean_std(per_seed))
        result["table1"] = table
        print(f"Table 1 seed {seed} done ({time.time() - start:.0f} s)", flush=True)
        if i == 0:
            new_models = {"original": model, **models_by_seed[seed]}
            pick = stratified_indices(test.y, args.n_new, groups=test.groups, seed=0)  # both classes, all patients
            rows, fixed = new_adversarials(new_models, test.x[pick], test.y[pick], attack="pgd",
                                           eps=args.eps, eps_grid=grid, seed=seed, **iterative_params(args.pgd_steps))
            result["new_adversarials"] = {"attack": "pgd", **iterative_params(args.pgd_steps), "eps": args.eps,
                                          "eps_grid": grid, "n": int(len(pick)), "seed": seed, "rows": rows}
            fig_paths = {"fig10": plot_new_adversarials(fixed, figs / f"defenses_{args.tag}_fig10.png",
                                                        n_samples=3, class_names=test.class_names),
                         "new_rates": plot_new_adversarial_rates(
                             rows, figs / f"defenses_{args.tag}_new_adversarials.png")}
        fig_paths["table1"] = plot_recovery(table, figs / f"defenses_{args.tag}_table1.png")
        result["figures"] = {k: str(p.relative_to(out)) for k, p in fig_paths.items()}
        result["seconds"] = time.time() - start
        write_json(out / f"defenses_{args.tag}.json", result)
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    """The two tables of docs/results/defenses.md from a result JSON."""
    t = result["table1"]
    s = t["summary"]
    lines = ["| defense | " + " | ".join(f"{a.upper()} recovered %" for a in t["attacks"]) +
             " | all % | all, balanced over classes % | clean accuracy | balanced accuracy | degenerate (seeds) |",
             "|---" * (len(t["attacks"]) + 6) + "|"]
    acc = s["clean_accuracy"]
    bal = s.get("balanced_accuracy")
    n_seeds = len(t["seeds"])

    def extra(name: str) -> str:  # columns that JSONs written before the balanced metrics lack
        if not bal:
            return " - | - |"
        deg = round(s["degenerate"][name]["mean"] * n_seeds)
        return f" {bal[name]['mean']:.3f} ± {bal[name]['std']:.3f} | {deg}/{n_seeds} |"

    lines.append("| original | " + " | ".join("0 (by definition)" for _ in t["attacks"]) +
                 f" | 0 | 0 | {acc['original']['mean']:.3f} |" + extra("original"))
    for d, rows in s["recovered"].items():
        cells = [_pct(rows[a]) for a in [*t["attacks"], "all"]]
        balanced = _pct(s["recovered_balanced"][d]["all"]) if "recovered_balanced" in s else "-"
        lines.append(f"| {d} | " + " | ".join(cells) + f" | {balanced} | {acc[d]['mean']:.3f} ± {acc[d]['std']:.3f} |"
                     + extra(d))
    fooled = ", ".join(f"{a.upper()} {s['n_fooled'][a]['mean']:.0f}" for a in t["attacks"])
    n_eval = result.get("n_eval_images", result["args"]["n_eval"])
    lines += ["", f"Initial adversarials that fooled the original (per seed, of {n_eval} "
              f"held-out images): {fooled}.", ""]
    n = result["new_adversarials"]
    lines += [f"| model | PGD success at eps {n['eps'] * 255:.0f}/255 (on correct) | median minimal Linf | "
              "median minimal L2 | broken within grid |", "|---|---|---|---|---|"]
    for name, r in n["rows"].items():
        linf = r["median_min_linf"]
        finite = linf is not None and math.isfinite(linf)
        linf_s = f"{linf * 255:.1f}/255" if finite else f"> {n['eps_grid'][-1] * 255:.0f}/255"
        l2 = r["median_min_l2"]
        l2_s = f"{l2:.3f}" if l2 is not None and math.isfinite(l2) else "-"
        lines.append(f"| {name} | {100 * r['success_rate_on_correct']:.1f} % | {linf_s} | {l2_s} | "
                     f"{100 * r['broken_within_grid']:.0f} % |")
    return "\n".join(lines)


def _pct(cell: dict) -> str:
    """mean ± std in percent; "-" when no seed had anything to measure (NaN, stored as null in JSON)."""
    if cell["mean"] is None or not math.isfinite(cell["mean"]):
        return "-"
    return f"{100 * cell['mean']:.1f} ± {100 * cell['std']:.1f}"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--markdown":
        print(markdown(json.loads(Path(sys.argv[2]).read_text())))
    else:
        main()
