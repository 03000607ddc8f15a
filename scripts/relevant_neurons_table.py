"""Reproduce the relevant-neuron detection tables (Granda, Tuytelaars & Oramas, 2020) on MNIST (LeNet)
and IDC (vgg_mini), with Feature Squeezing and Mahalanobis on the same adversarial sets.

For each attack (FGSM, JSMA, CW-L2; JSMA and CW targeted at (y + 1) mod C) the correctly classified
images of two disjoint parts are attacked: detectors are fitted on the first part (MNIST: validation
digits; IDC: validation patients) and tested on the second, unseen part (MNIST: test digits; IDC:
test patients). Relevant-neuron rows cover mu in {10, 20, 100}, four neuron sets, with and without
the predicted label. A cross-attack block fits on FGSM and tests on the other attacks.

    python scripts/relevant_neurons_table.py --data mnist --seed 0
    python scripts/relevant_neurons_table.py --data idc --seed 0
write docs/results/relevant_neurons_<data>.json and figures under docs/results/figures/relevant_neurons/;
    python scripts/relevant_neurons_table.py --render docs/results/relevant_neurons_mnist.json ...
prints the Markdown tables of docs/results/relevant_neurons.md from those JSON files.

The paper's setting (fit on images per class, more fitting samples than neurons; test on every
unseen image's clean original and its adversarial, equally many of each; its three neuron sets):
    python scripts/relevant_neurons_table.py --data mnist --seed 0 --per-class 100 --n-test 1500 \
        --balanced --sets clean,shared,sym_diff --no-cross --no-figures --n-jobs 1
writes docs/results/relevant_neurons_mnist_paper_setting.json; its render prints the paper's
Table 1 beside ours.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from advkeras.data import load_sample, split_by_group, split_random  # noqa: E402
from advkeras.data.sampling import stratified_subset  # noqa: E402
from advkeras.detectors.relevant_neurons import NeuronDescriptors, RelevantNeuronSets  # noqa: E402
from advkeras.detectors.relevant_neurons.experiment import (AttackSpec, attack_part,  # noqa: E402
                                                            balanced_accuracy, peer_rows,
                                                            relevant_neuron_rows)
from advkeras.detectors.relevant_neurons.views import plot_centroid_kde, plot_relevant_gradcam  # noqa: E402
from advkeras.models import build_classifier, evaluate_classifier, train_classifier  # noqa: E402
from advkeras.runs import write_json  # noqa: E402

ATTACKS = {"mnist": [AttackSpec("fgsm", 0.2), AttackSpec("jsma", targeted=True),
                     AttackSpec("cw", targeted=True)],
           "idc": [AttackSpec("fgsm", 4 / 255), AttackSpec("jsma", targeted=True, params={"gamma": 0.05}),
                   AttackSpec("cw", targeted=True)]}
FIGURES = Path("docs/results/figures/relevant_neurons")
# Granda et al. 2020, Table 1 (LeNet / MNIST, accuracy on 10k clean + 10k adversarial test images):
# set -> attack -> (mu 100, 20, 10 with the predicted label, then mu 100, 20, 10 without).
PAPER_TABLE1 = {
    "shared": {"fgsm": (0.969, 0.982, 0.983, 0.977, 0.966, 0.912), "jsma": (0.984, 0.974, 0.966, 0.953, 0.912, 0.832),
               "cw": (0.980, 0.979, 0.974, 0.969, 0.963, 0.964)},
    "clean": {"fgsm": (0.982, 0.982, 0.985, 0.977, 0.976, 0.963), "jsma": (0.981, 0.977, 0.972, 0.953, 0.942, 0.841),
              "cw": (0.978, 0.979, 0.978, 0.966, 0.969, 0.957)},
    "sym_diff": {"fgsm": (0.981, 0.980, 0.981, 0.977, 0.977, 0.971), "jsma": (0.973, 0.978, 0.974, 0.954, 0.945, 0.916),
                 "cw": (0.974, 0.977, 0.978, 0.965, 0.969, 0.958)},
}


def model_and_parts(data: str, seed: int, n_fit: int, n_test: int, epochs: int, per_class: int | None = None):
    """Classifier (trained on the training part) and the fitting / test / statistics images: `n_fit`
    random validation images, or `per_class` of each class (stratified) when given."""
    ds = load_sample(data)
    train, val, test = (split_random if data == "mnist" else split_by_group)(ds, seed=seed)
    model = build_classifier("lenet" if data == "mnist" else "vgg_mini", ds.input_shape, ds.n_classes, seed=seed)
    train_classifier(model, train, val, epochs=epochs, augment=data == "idc", seed=seed)
    rng = np.random.default_rng(seed)
    pick = lambda part, n: part.subset(np.sort(rng.permutation(len(part))[:n]))  # noqa: E731
    fit = stratified_subset(val, per_class * ds.n_classes, seed=seed) if per_class else pick(val, n_fit)
    return model, evaluate_classifier(model, test), fit, pick(test, n_test), pick(train, 3000)


def figures(data: str, model, nd: NeuronDescriptors, fit, test, seed: int) -> dict:
    FIGURES.mkdir(parents=True, exist_ok=True)
    fc, fa = nd.transform(fit.clean), nd.transform(fit.adv)
    tc, ta = nd.transform(test.clean), nd.transform(test.adv)
    sets = RelevantNeuronSets(10, n_classes=int(model.output_shape[-1])).fit(
        fc[:, :-1], fc[:, -1].astype(int), fa[:, :-1], fa[:, -1].astype(int))
    kde = plot_centroid_kde(fc[:, :-1], fc[:, -1].astype(int), tc[:, :-1], tc[:, -1].astype(int), ta[:, :-1],
                            ta[:, -1].astype(int), sets.mask("clean"), FIGURES / f"{data}_fgsm_kde.png",
                            seed=seed, title=f"{data}: distance to class centroid, FGSM, mu=10")
    # GradCAM of the strongest relevant neuron of each image's clean class and of its whole set.
    plot_relevant_gradcam(model, nd, sets, test.result, FIGURES / f"{data}_fgsm_gradcam.png")
    return {"kde": str(FIGURES / f"{data}_fgsm_kde.png"), "kde_means": kde,
            "gradcam": str(FIGURES / f"{data}_fgsm_gradcam.png")}


def _balanced(r: dict) -> float:
    # results written before the column existed carry TPR and FPR, which determine it
    return r["balanced_accuracy"] if r.get("balanced_accuracy") is not None else balanced_accuracy(r["tpr"], r["fpr"])


def _cell(r: dict) -> str:
    return (f"{r['accuracy']:.3f} / {_balanced(r):.3f} / {r['tpr']:.3f} / {r['fpr']:.3f} / {r['auc']:.3f} / "
            f"{r['tpr_at_5fpr']:.3f}")


def _setting(r: dict) -> tuple:
    """What identifies a detector setting across attacks: detector, mu, neuron set, with/without label."""
    return r["detector"], r.get("mu"), r.get("neuron_set"), r.get("with_label")


def _setting_rows(keys: list[tuple], rows: list[dict], tests: list[str], *, skip_empty: bool) -> list[str]:
    """One table row per setting, one cell per tested attack ("-" where that pair was not run)."""
    lines = []
    for k in keys:
        hits = [[r for r in rows if r["test"] == t and _setting(r) == k] for t in tests]
        cells = [_cell(hit[0]) if hit else "-" for hit in hits]
        if skip_empty and all(c == "-" for c in cells):
            continue
        label = "" if k[3] is None else ("with" if k[3] else "without")
        mu = "" if k[1] is None else f"{k[1]:g}"
        lines.append(f"| {k[0]} | {mu} | {k[2] or ''} | {label} | " + " | ".join(cells) + " |")
    return lines


def render(path: str) -> str:
    """Markdown tables (same-attack, cross-attack, neuron-set sizes) from one result JSON."""
    d = json.loads(Path(path).read_text())
    attacks = list(d["attacks"])
    rows = d["rows"]
    out = [f"Command: `{d['command']}` (seed {d['seed']}); classifier held-out accuracy "
           f"{d['classifier']['accuracy']:.3f}; {d['n_neurons']} neurons in {len(d['layers'])} layers.", "",
           "| attack | fit: clean / adv | test: clean / adv | attack success (test) |", "|---|---|---|---|"]
    for a, info in d["attacks"].items():
        out.append(f"| {a} | {info['n_fit'][0]} / {info['n_fit'][1]} | {info['n_test'][0]} / {info['n_test'][1]} | "
                   f"{info['test']['success_rate_on_correct']:.3f} |")
    out += ["", "Each cell: accuracy / balanced accuracy / TPR / FPR (forest majority vote or the peer's 5 % "
            "threshold) / AUC / TPR at 5 % FPR (threshold from out-of-bag or fitting-set clean scores).", "",
            "| detector | mu | set | label | " + " | ".join(attacks) + " |", "|---" * (4 + len(attacks)) + "|"]
    same = [r for r in rows if r["train"] == r["test"]]
    keys = list(dict.fromkeys(_setting(r) for r in same))
    out += _setting_rows(keys, same, attacks, skip_empty=False)
    cross = [r for r in rows if r["train"] == "fgsm" and r["test"] != "fgsm"]
    if cross:
        tests = sorted({r["test"] for r in cross})
        out += ["", "Cross-attack: fitted on FGSM only, tested on unseen images of the other attacks.", "",
                "| detector | mu | set | label | " + " | ".join(f"FGSM -> {t}" for t in tests) + " |",
                "|---" * (4 + len(tests)) + "|"]
        out += _setting_rows(keys, cross, tests, skip_empty=True)
    out += ["", "Neurons selected per class (mean over classes, and % of all neurons), per attack and mu:", "",
            "| attack | mu | clean | adv | shared | sym_diff | solver converged (clean / adv) |", "|---|---|---|---|---|---|---|"]
    for a, per_mu in d["neuron_sets"].items():
        for mu, s in per_mu.items():
            cells = [f"{s['sets'][n]['mean_per_class']:.1f} ({s['sets'][n]['pct_per_class']:.1f} %)"
                     for n in ("clean", "adv", "shared", "sym_diff")]
            conv = f"{s['solver']['clean']['converged']} / {s['solver']['adv']['converged']}"
            out.append(f"| {a} | {mu} | " + " | ".join(cells) + f" | {conv} |")
    out += _solver_table(d)
    if d.get("balanced"):
        out += _paper_table(d)
    return "\n".join(out)


def _solver_table(d: dict) -> list[str]:
    """Per class: mu-Lasso iterations (working-set rounds + SPG iterations) and relative duality gap."""
    per = [(a, mu, side, s["solver"][side]) for a, per_mu in d["neuron_sets"].items() for mu, s in per_mu.items()
           for side in ("clean", "adv")]
    if not per or "n_iter" not in per[0][3]:
        return []  # written by the solver before per-class figures were kept
    n_classes = len(per[0][3]["n_iter"])
    out = ["", "mu-Lasso per class: iterations (working-set rounds + SPG iterations) / relative duality gap "
               "(gap / objective, a bound on the objective's relative distance to the optimum; tolerance 1e-4).", "",
           "| attack | mu | descriptors | " + " | ".join(f"class {c}" for c in range(n_classes)) + " |",
           "|---" * (3 + n_classes) + "|"]
    for a, mu, side, info in per:
        cells = [f"{it} / {g:.0e}" for it, g in zip(info["n_iter"], info["rel_gap"])]
        out.append(f"| {a} | {mu} | {side} | " + " | ".join(cells) + " |")
    return out


def _paper_table(d: dict) -> list[str]:
    """The paper's Table 1 layout: per neuron set and attack, mu 100/20/10 with and without the label;
    each cell ours as balanced accuracy / AUC, then the paper's accuracy (its test sets are balanced)."""
    rows = [r for r in d["rows"] if r["train"] == r["test"] and r["detector"] == "relevant-neurons"]
    out = ["", "The paper's Table 1 beside ours: each cell is ours, balanced accuracy / AUC, then (the paper's "
               "accuracy on its balanced 10k + 10k test set).", "",
           "| set | attack | with, mu 100 | with, mu 20 | with, mu 10 | without, mu 100 | without, mu 20 | "
           "without, mu 10 |", "|---|---|---|---|---|---|---|---|"]
    for name, per_attack in PAPER_TABLE1.items():
        for attack, paper in per_attack.items():
            cells = []
            for k, (label, mu) in enumerate([(w, m) for w in (True, False) for m in (100.0, 20.0, 10.0)]):
                hit = [r for r in rows if r["neuron_set"] == name and r["test"] == attack and r["with_label"] == label
                       and float(r["mu"]) == mu]
                ours = f"{_balanced(hit[0]):.3f} / {hit[0]['auc']:.3f}" if hit else "-"
                cells.append(f"{ours} ({paper[k]:.3f})")
            out.append(f"| {name} | {attack} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--render", nargs="+", default=None, help="print Markdown tables from result JSON files")
    ap.add_argument("--data", choices=["mnist", "idc"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-fit", type=int, default=300, help="images attacked for fitting the detectors")
    ap.add_argument("--n-test", type=int, default=300, help="unseen images attacked for testing")
    ap.add_argument("--epochs", type=int, default=None, help="classifier epochs (default: mnist 4, idc 10)")
    ap.add_argument("--mus", default="10,20,100")
    ap.add_argument("--sets", default="clean,adv,shared,sym_diff")
    ap.add_argument("--attacks", default="fgsm,jsma,cw")
    ap.add_argument("--n-estimators", type=int, default=1000)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--per-class", type=int, default=None,
                    help="fit on this many validation images per class (stratified) instead of --n-fit random ones")
    ap.add_argument("--balanced", action="store_true",
                    help="clean sides are the originals of the successful adversarials (as many clean as adversarial)")
    ap.add_argument("--no-cross", action="store_true", help="skip the cross-attack block (fit on FGSM, test on others)")
    ap.add_argument("--no-figures", action="store_true", help="skip the KDE and GradCAM figures")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.render:
        print("\n\n".join(render(p) for p in args.render))
        return
    if not args.data:
        ap.error("--data is required (or --render)")
    start = time.perf_counter()
    epochs = args.epochs or (4 if args.data == "mnist" else 10)
    model, clf, fit_part, test_part, stats = model_and_parts(args.data, args.seed, args.n_fit, args.n_test, epochs,
                                                             args.per_class)
    print(f"{args.data}: held-out accuracy {clf['accuracy']:.3f}")
    specs = [s for s in ATTACKS[args.data] if s.name in args.attacks.split(",")]
    fits, tests, attack_info = {}, {}, {}
    for spec in specs:
        fits[spec.name] = attack_part(model, fit_part, spec, args.seed, balanced=args.balanced)
        tests[spec.name] = attack_part(model, test_part, spec, args.seed + 1, balanced=args.balanced)
        attack_info[spec.name] = {"spec": spec.__dict__, "fit": fits[spec.name].result.summary(),
                                  "test": tests[spec.name].result.summary(),
                                  "n_fit": [len(fits[spec.name].clean), len(fits[spec.name].adv)],
                                  "n_test": [len(tests[spec.name].clean), len(tests[spec.name].adv)]}
        print(spec.label, attack_info[spec.name]["n_fit"], attack_info[spec.name]["n_test"])
    nd = NeuronDescriptors(model, append_prediction=True).fit()
    mus = [float(m) for m in args.mus.split(",")]
    rows, summaries = [], {}
    for name in fits:
        # Detectors fitted on FGSM are also tested on the other attacks (cross-attack rows).
        tests_for = {name: tests[name]} if name != "fgsm" or args.no_cross else tests
        r, s = relevant_neuron_rows(nd, fits[name], tests_for, mus=mus, neuron_sets=args.sets.split(","),
                                    n_estimators=args.n_estimators, seed=args.seed, n_jobs=args.n_jobs)
        rows += [{**row, "train": name} for row in r]
        summaries[name] = s
        rows += [{**row, "train": name} for row in peer_rows(model, fits[name], tests_for, stats=stats)]
        print(f"{name}: {len(rows)} rows, {time.perf_counter() - start:.0f} s")
    views = (figures(args.data, model, nd, fits["fgsm"], tests["fgsm"], args.seed)
             if "fgsm" in fits and not args.no_figures else {})
    paper = args.balanced and args.per_class
    out = Path(args.out or f"docs/results/relevant_neurons_{args.data}{'_paper_setting' if paper else ''}.json")
    size = f"--per-class {args.per_class}" if args.per_class else f"--n-fit {args.n_fit}"
    extra = "".join(f" {flag}" for flag, on in (("--balanced", args.balanced), ("--no-cross", args.no_cross),
                                                   ("--no-figures", args.no_figures)) if on)
    if args.sets != "clean,adv,shared,sym_diff":
        extra += f" --sets {args.sets}"
    if args.attacks != "fgsm,jsma,cw":
        extra += f" --attacks {args.attacks}"
    write_json(out, {"command": f"python scripts/relevant_neurons_table.py --data {args.data} --seed {args.seed}"
                                f" {size} --n-test {args.n_test} --n-estimators {args.n_estimators}{extra}"
                                f" --n-jobs {args.n_jobs}",
                     "seed": args.seed, "balanced": args.balanced, "per_class": args.per_class,
                     "fit_per_class": {k: np.bincount(v.labels, minlength=int(model.output_shape[-1])).tolist()
                                       for k, v in fits.items()},
                     "classifier": clf, "layers": nd.layers_, "n_neurons": nd.n_neurons_,
                     "attacks": attack_info, "neuron_sets": summaries, "rows": rows, "figures": views,
                     "seconds": time.perf_counter() - start})
    print(f"wrote {out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
