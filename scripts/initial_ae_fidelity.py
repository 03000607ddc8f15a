"""Does the initial autoencoder keep the classifier's answers? Pixel loss alone vs a classifier-consistency loss.

    python scripts/initial_ae_fidelity.py --seed 0 [--model runs/demo/model.keras]

Without --model, trains the classifier as `make demo` does (vgg_mini, embedded IDC sample, patient-wise split,
seed). For each (epochs, consistency) setting, builds the initial-AE defense and reports, on the validation
patients and on all held-out patients: accuracy, balanced accuracy, share of predictions per class, whether
the model is degenerate (advkeras.evaluation.sanity.degeneracy), and the share of PGD adversarials (made on
the original at 4/255, 10 steps, on a stratified held-out subset) that it classifies correctly again.
Writes docs/results/initial_ae_fidelity.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="original classifier (.keras); default: train one as make demo does")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", nargs="+", default=["3:0", "3:1", "10:0", "10:1"],
                   help="epochs:consistency pairs")
    p.add_argument("--eps", type=float, default=4 / 255)
    p.add_argument("--n-eval", type=int, default=96)
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "initial_ae_fidelity.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    from advkeras.assess.config import load_config
    from advkeras.data import load_sample, split_by_group, stratified_subset
    from advkeras.defenses import initial_autoencoder
    from advkeras.evaluation.robustness import initial_adversarials, recovery_rates
    from advkeras.evaluation.sanity import degeneracy
    from advkeras.models import build_classifier, evaluate_classifier, load_model, train_classifier
    from advkeras.runs import write_json
    from advkeras.seeding import deterministic_ops

    deterministic_ops(True)
    start = time.time()
    train, val, test = split_by_group(load_sample("idc"), seed=args.seed)
    if args.model:
        model = load_model(args.model)
    else:
        t = load_config()["train"]
        model = build_classifier("vgg_mini", train.input_shape, 2, seed=args.seed)
        train_classifier(model, train, val, epochs=t["epochs"], batch_size=t["batch_size"],
                         learning_rate=t["learning_rate"], patience=t["patience"], augment=True, seed=args.seed)
    ev = stratified_subset(test, args.n_eval, seed=args.seed)
    adv = initial_adversarials(model, ev.x, ev.y, ["pgd"], eps=args.eps, seed=args.seed,
                               attack_params={"pgd": {"steps": 10}})
    ref = {"val": evaluate_classifier(model, val), "test": evaluate_classifier(model, test)}
    rows = [{"setting": "original", **{k: _brief(v) for k, v in ref.items()}}]
    for setting in args.settings:
        epochs, consistency = int(setting.split(":")[0]), float(setting.split(":")[1])
        res = initial_autoencoder(model, train, val, epochs=epochs, consistency=consistency, seed=args.seed)
        q = {"val": evaluate_classifier(res.model, val), "test": evaluate_classifier(res.model, test)}
        rec = recovery_rates({"initial-ae": res.model}, adv)["initial-ae"]["all"]
        rows.append({"setting": f"epochs {epochs}, consistency {consistency:g}", "epochs": epochs,
                     "consistency": consistency, "info": res.info, **{k: _brief(v) for k, v in q.items()},
                     "degenerate_reasons": degeneracy(q["test"], ref["test"]),
                     "val_balanced_drop": ref["val"]["balanced_accuracy"] - q["val"]["balanced_accuracy"],
                     "recovered": rec["recovered"], "recovered_balanced": rec["balanced"], "recovered_n": rec["n"]})
        print(rows[-1]["setting"], rows[-1]["test"], "drop(val)", round(rows[-1]["val_balanced_drop"], 3),
              "recovered", round(rec["recovered"], 3), flush=True)
    out = {"command": f"python scripts/initial_ae_fidelity.py --seed {args.seed}"
           + (f" --model {args.model}" if args.model else ""), "seed": args.seed, "eps": args.eps,
           "n_eval": len(ev), "rows": rows, "seconds": time.time() - start}
    write_json(args.out, out)
    return out


def _brief(m: dict) -> dict:
    return {k: m[k] for k in ("n", "accuracy", "balanced_accuracy", "prediction_share", "per_class_recall")}


if __name__ == "__main__":
    main()
