"""The relevant-neuron paper's CIFAR-10 / DenseNet experiments (Granda et al. 2020, Table 2 and Table 4),
scaled to a shared CPU, with the paper's numbers printed beside ours.

Data: the 10,000 CIFAR-10 test JPEGs (``<dir>/<class>/*.jpg``), split 70/15/15 (split_random, seed):
a small DenseNet (zoo backbone ``densenet_mini``) trains on the first part, detectors fit on images of
the second, and are tested on images of the third, never seen by either.

Exp-1 (Table 2): attacks near the paper's "Foolbox defaults" where we can run them (FGSM: the smallest eps
of a grid, as Foolbox 1's GradientSignAttack searched; JSMA: ART, theta 1, `--jsma-gamma` (Foolbox 1's
theta 0.1 is out of reach on shared CPUs); CW-L2: Foolbox, 5 binary steps x `--cw-steps`, lr 0.005, as
Foolbox 1 but fewer steps); relevant-neuron detectors for the three neuron sets, mu 10/20/100, with/without
the predicted label; Feature Squeezing and Mahalanobis on the same images.

Exp-2 (Table 4): the first 100 correctly predicted test images (classes interleaved: the folders list images
class by class), attacked with the paper's stronger parameters (FGSM eps 0.3, and the smallest eps up to
0.3; JSMA theta 1 with at most 51 iterations; CW-L2 9 binary steps x `--exp2-cw-steps` steps, lr 0.01,
initial const 0.01); our detectors fitted on Exp-1's adversarials of the same attack (as the paper did),
Feature Squeezing calibrated on Exp-1's clean fitting images.

gradcam (item 7 of issue 18): the paper's isolated single-neuron GradCAM beside our energy variant and the
class GradCAM, for the strongest shared relevant neurons, on clean images and their FGSM adversarials.

    python scripts/relevant_neurons_cifar10.py --stage train --seed 0 --work /tmp/rn_cifar
    python scripts/relevant_neurons_cifar10.py --stage exp1 --seed 0 --work /tmp/rn_cifar --attacks fgsm
    python scripts/relevant_neurons_cifar10.py --stage exp2 --seed 0 --work /tmp/rn_cifar --attacks fgsm,jsma
    python scripts/relevant_neurons_cifar10.py --stage gradcam --seed 0 --work /tmp/rn_cifar
    python scripts/relevant_neurons_cifar10.py --render docs/results/relevant_neurons_cifar10_fgsm.json ...
write docs/results/relevant_neurons_cifar10_<attacks>.json (exp1), ..._exp2_<attacks>.json, ..._gradcam.json
and print the Markdown tables of docs/results/relevant_neurons.md (exact sizes there).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from advkeras.attacks import minimal_adversarials  # noqa: E402
from advkeras.data import load_image_folder, split_random  # noqa: E402
from advkeras.data.dataset import Dataset  # noqa: E402
from advkeras.detectors.relevant_neurons import (NeuronDescriptors, RelevantNeuronDetector,  # noqa: E402
                                                 RelevantNeuronSets)
from advkeras.detectors.relevant_neurons.experiment import (AttackSpec, DetectionSet, attack_part,  # noqa: E402
                                                            peer_rows, score_row)
from advkeras.models import (build_classifier, evaluate_classifier, load_model, predict_logits,  # noqa: E402
                             save_model, train_classifier)
from advkeras.runs import write_json  # noqa: E402

# Table 2 (CIFAR-10, DenseNet): accuracy per set, attack, label condition and mu, as printed in the paper.
PAPER_TABLE2 = {
    ("shared", "fgsm"): {True: {100: .944, 20: .956, 10: .954}, False: {100: .844, 20: .864, 10: .864}},
    ("shared", "jsma"): {True: {100: .946, 20: .932, 10: .926}, False: {100: .929, 20: .871, 10: .864}},
    ("shared", "cw"): {True: {100: .892, 20: .881, 10: .879}, False: {100: .862, 20: .706, 10: .721}},
    ("clean", "fgsm"): {True: {100: .937, 20: .952, 10: .953}, False: {100: .810, 20: .854, 10: .818}},
    ("clean", "jsma"): {True: {100: .945, 20: .939, 10: .934}, False: {100: .934, 20: .879, 10: .875}},
    ("clean", "cw"): {True: {100: .893, 20: .875, 10: .878}, False: {100: .802, 20: .703, 10: .698}},
    ("sym_diff", "fgsm"): {True: {100: .879, 20: .900, 10: .915}, False: {100: .788, 20: .849, 10: .860}},
    ("sym_diff", "jsma"): {True: {100: .924, 20: .931, 10: .926}, False: {100: .931, 20: .928, 10: .932}},
    ("sym_diff", "cw"): {True: {100: .848, 20: .882, 10: .873}, False: {100: .823, 20: .871, 10: .880}},
}
# Table 4 (CIFAR-10): detection accuracy; NIC and Feature Squeezing as the paper quotes them from their papers.
PAPER_TABLE4 = {"fgsm": {"ours_mu10": .940, "ours_mu20": .940, "nic": 1.0, "feature_squeezing": .210},
                "jsma": {"ours_mu10": .941, "ours_mu20": .951, "nic": .960, "feature_squeezing": .840},
                "cw": {"ours_mu10": .805, "ours_mu20": .820, "nic": .940, "feature_squeezing": 1.0}}
# Foolbox 1's FGSM walked eps over a 1/1000 grid and kept the first that fooled; ours (for time): 2/1000 steps
# to 0.05, then 0.01 steps to 0.1, then 0.15-0.3.
FGSM_GRID = tuple(np.round(np.r_[np.arange(1, 26) * 0.002, np.arange(6, 11) * 0.01, [0.15, 0.2, 0.25, 0.3]], 4))
FIGURES = Path("docs/results/figures/relevant_neurons")
CIFAR_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
JSMA_MAX_ITER = 51  # the paper's JSMA max_iter; each iteration changes two features (ART takes a share, gamma)


def exp1_specs(cw_steps: int, jsma_gamma: float) -> list[AttackSpec]:
    # Foolbox 1's JSMA default (theta 0.1, up to 7 changes per pixel) is out of reach on shared CPUs; theta 1.
    return [AttackSpec("fgsm", params={"minimal": True}),
            AttackSpec("jsma", targeted=True, params={"theta": 1.0, "gamma": jsma_gamma}),
            AttackSpec("cw", targeted=True, params={"binary_search_steps": 5, "steps": cw_steps, "stepsize": 0.005,
                                                    "initial_const": 0.01, "confidence": 0.0})]


def exp2_specs(cw_steps: int, n_features: int) -> list[AttackSpec]:
    return [AttackSpec("fgsm", 0.3), AttackSpec("fgsm", params={"minimal": True, "max_eps": 0.3}),
            AttackSpec("jsma", targeted=True, params={"theta": 1.0, "gamma": 2 * JSMA_MAX_ITER / n_features}),
            AttackSpec("cw", targeted=True, params={"binary_search_steps": 9, "steps": cw_steps, "stepsize": 0.01,
                                                    "initial_const": 0.01, "confidence": 0.0})]


def spec_label(spec: AttackSpec) -> str:
    if spec.params.get("minimal"):
        return f"fgsm_min{'@' + str(spec.params['max_eps']) if 'max_eps' in spec.params else ''}"
    return spec.label


def run_attack(model, part: Dataset, spec: AttackSpec, seed: int) -> tuple[DetectionSet, dict]:
    """The correctly classified images of `part` and their successful adversarials, with a summary."""
    start = time.perf_counter()
    # Attack only what the model gets right (the others are not used): saves the attack time spent on them.
    part = part.subset(np.flatnonzero(predict_logits(model, part.x, 256).argmax(1) == part.y))
    if spec.params.get("minimal"):  # FGSM at each image's smallest fooling eps of the grid
        grid = [e for e in FGSM_GRID if e <= spec.params.get("max_eps", 1.0)]
        m = minimal_adversarials(model, part.x, part.y, "fgsm", eps_grid=grid, seed=seed, progress=False)
        correct, fooled = m.eps > 0, np.isfinite(m.eps) & (m.eps > 0)
        ds = DetectionSet(part.x[correct], part.y[correct], m.x_adv[fooled])
        info = {"success_rate_on_correct": float(fooled.sum() / max(correct.sum(), 1)),
                "median_eps": float(np.median(m.eps[fooled])) if fooled.any() else None,
                "median_l2": float(np.median(m.l2[fooled])) if fooled.any() else None}
    else:
        ds = attack_part(model, part, spec, seed)
        s = ds.result.summary()
        fooled = ds.result.fooled
        info = {"success_rate_on_correct": s["success_rate_on_correct"],
                "median_l2": float(np.median(ds.result.l2[fooled])),
                "median_l0": float(np.median((np.abs(ds.result.clipped - ds.result.x)[fooled] > 1e-6)
                                             .reshape(int(fooled.sum()), -1).sum(1)))}
    info.update({"n_clean": len(ds.clean), "n_adv": len(ds.adv), "seconds": time.perf_counter() - start,
                 "spec": spec.__dict__})
    return ds, info


def with_balanced(row: dict) -> dict:
    """Balanced accuracy = (TPR + TNR) / 2 at the detector's own decision (test sets are not balanced)."""
    if "balanced_accuracy" not in row:
        row = {**row, "balanced_accuracy": (row["tpr"] + 1 - row["fpr"]) / 2}
    return row


def model_and_parts(args) -> tuple:
    ds = load_image_folder(args.data_dir, progress=False)
    train, val, test = split_random(ds, seed=args.seed)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"densenet_mini_seed{args.seed}.keras"
    if path.exists():
        model = load_model(path)
        history = json.loads((work / "train.json").read_text())
    else:
        model = build_classifier("densenet_mini", ds.input_shape, ds.n_classes, seed=args.seed)
        # No augmentation: the zoo's augmentation for square images turns them by 90 degrees (histology).
        res = train_classifier(model, train, val, epochs=args.epochs, augment=False, seed=args.seed)
        save_model(model, path)
        history = {"epochs": args.epochs, "history": res.history}
        (work / "train.json").write_text(json.dumps(history))
    return model, ds, train, val, test, history


def pick(part: Dataset, n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    return part.subset(np.sort(rng.permutation(len(part))[:n]))


def save_sets(path: Path, sets: dict[str, DetectionSet]) -> None:
    fields = ("clean", "labels", "adv")
    np.savez_compressed(path, **{f"{k}__{f}": getattr(v, f) for k, v in sets.items() for f in fields})


def load_sets(path: Path) -> dict[str, DetectionSet]:
    z = np.load(path)
    names = sorted({k.split("__")[0] for k in z.files})
    return {n: DetectionSet(z[f"{n}__clean"], z[f"{n}__labels"], z[f"{n}__adv"]) for n in names}


def exp1(args, model, train, val, test, clf) -> dict:
    fit_part, test_part = pick(val, args.n_fit, args.seed), pick(test, args.n_test, args.seed + 1)
    fits, tests, info = {}, {}, {}
    for spec in exp1_specs(args.cw_steps, args.jsma_gamma):
        if spec.name not in args.attacks.split(","):
            continue
        fits[spec.name], fi = run_attack(model, fit_part, spec, args.seed)
        tests[spec.name], ti = run_attack(model, test_part, spec, args.seed + 1)
        info[spec.name] = {"label": spec_label(spec), "fit": fi, "test": ti}
        print(spec.name, {k: (v["n_clean"], v["n_adv"], round(v["success_rate_on_correct"], 3), round(v["seconds"]))
                          for k, v in info[spec.name].items() if k != "label"}, flush=True)
    for name, fit in fits.items():
        save_sets(Path(args.work) / f"exp1_fit_{name}.npz", {name: fit})
    nd = NeuronDescriptors(model, append_prediction=True).fit()
    rows, summaries = [], {}
    stats = pick(train, 3000, args.seed)
    for name in fits:
        r, summaries[name] = detector_rows(nd, fits[name], tests[name], name, args)
        rows += r
        rows += [with_balanced({**row, "train": name}) for row in peer_rows(model, fits[name], {name: tests[name]},
                                                                            stats=stats)]
        print(f"{name}: detectors done", flush=True)
    return {"attacks": info, "n_neurons": nd.n_neurons_, "layers": nd.layers_, "neuron_sets": summaries, "rows": rows}


def detector_rows(nd: NeuronDescriptors, fit: DetectionSet, test: DetectionSet, name: str, args) -> tuple[list, dict]:
    """One detector per (mu, set, label), as `relevant_neuron_rows` but an empty set gives a row marked empty
    (the paper's shared sets are small; an empty one at mu 10 is a result, not a crash)."""
    fc, fa = nd.transform(fit.clean), nd.transform(fit.adv)
    tc, ta = nd.transform(test.clean), nd.transform(test.adv)
    X, y = np.r_[fc, fa], np.r_[np.zeros(len(fc)), np.ones(len(fa))].astype(int)
    rows, summaries = [], {}
    for mu in (float(m) for m in args.mus.split(",")):
        sets = RelevantNeuronSets(mu, n_classes=10).fit(fc[:, :-1], fc[:, -1].astype(int), fa[:, :-1],
                                                        fa[:, -1].astype(int))
        summaries[f"{mu:g}"] = sets.summary()
        for neuron_set in args.sets.split(","):
            for use_label in (True, False):
                key = {"detector": "relevant-neurons", "mu": mu, "neuron_set": neuron_set, "with_label": use_label,
                       "test": name, "train": name}
                if not sets.mask(neuron_set).any():
                    rows.append({**key, "empty": True})
                    continue
                det = RelevantNeuronDetector(neuron_set=neuron_set, use_label=use_label, sets=sets, n_jobs=1,
                                             n_estimators=args.n_estimators, random_state=args.seed).fit(X, y)
                r = score_row(det.decision_function(tc), det.decision_function(ta), det.predict(tc), det.predict(ta),
                              det.oob_clean_scores_)
                rows.append(with_balanced({**key, "n_features": int(len(det.columns_)), **r}))
    return rows, summaries


def interleaved(y: np.ndarray) -> np.ndarray:
    """Indices ordered image 1 of every class, then image 2 of every class, ... The folders list images class
    by class, so their "first 100" would be 100 airplanes; CIFAR-10's own test order mixes the classes."""
    rank = np.empty(len(y), np.int64)
    for c in np.unique(y):
        rank[y == c] = np.arange(int((y == c).sum()))
    return np.lexsort((y, rank))


def first_correct(model, test: Dataset, n: int) -> Dataset:
    """The first `n` test images (classes interleaved, see `interleaved`) the model classifies correctly."""
    order = interleaved(test.y)
    pred = predict_logits(model, test.x[order], 256).argmax(1)
    return test.subset(order[np.flatnonzero(pred == test.y[order])[:n]])


def exp2(args, model, test) -> dict:
    fits = {}
    for path in sorted(Path(args.work).glob("exp1_fit_*.npz")):
        fits.update(load_sets(path))
    part = first_correct(model, test, args.exp2_n)
    nd = NeuronDescriptors(model, append_prediction=True).fit()
    n_features = int(np.prod(test.x.shape[1:]))
    rows, info = [], {}
    clean_desc = nd.transform(part.x)
    for spec in exp2_specs(args.exp2_cw_steps, n_features):
        if spec.name not in args.attacks.split(",") or spec.name not in fits:
            continue
        label = spec_label(spec)
        ds, info[label] = run_attack(model, part, spec, args.seed + 2)
        print(label, info[label]["n_clean"], info[label]["n_adv"], round(info[label]["seconds"]), flush=True)
        adv_desc = nd.transform(ds.adv)
        fit = fits[spec.name]
        fc, fa = nd.transform(fit.clean), nd.transform(fit.adv)
        X, y = np.r_[fc, fa], np.r_[np.zeros(len(fc)), np.ones(len(fa))].astype(int)
        for mu in (10.0, 20.0):
            sets = RelevantNeuronSets(mu, n_classes=10).fit(fc[:, :-1], fc[:, -1].astype(int), fa[:, :-1],
                                                            fa[:, -1].astype(int))
            if not sets.mask("shared").any():
                rows += [{"detector": "relevant-neurons", "mu": mu, "neuron_set": "shared", "with_label": lab,
                          "test": label, "train": spec.name, "empty": True} for lab in (True, False)]
                continue
            for use_label in (True, False):
                det = RelevantNeuronDetector(neuron_set="shared", use_label=use_label, n_estimators=args.n_estimators,
                                             sets=sets, n_jobs=1, random_state=args.seed).fit(X, y)
                r = score_row(det.decision_function(clean_desc), det.decision_function(adv_desc),
                              det.predict(clean_desc), det.predict(adv_desc), det.oob_clean_scores_)
                rows.append(with_balanced({"detector": "relevant-neurons", "mu": mu, "neuron_set": "shared",
                                           "with_label": use_label, "test": label, "train": spec.name, **r}))
        test_set = {label: DetectionSet(part.x, part.y, ds.adv)}
        rows += [with_balanced({**r, "train": spec.name})
                 for r in peer_rows(model, fit, test_set, peers=("feature-squeezing",))]
    return {"n_images": len(part), "attacks": info, "rows": rows}


def gradcam_stage(args, model, test) -> dict:
    """Item 7: the paper's isolated single-neuron GradCAM beside our energy variant and the class GradCAM at
    the neuron's layer, for the strongest relevant neurons (mu 10, shared set, fitted on Exp-1 FGSM) of each
    clean image's class, on clean test images and their minimal-eps FGSM adversarials."""
    from advkeras.detectors.relevant_neurons.views import plot_gradcam_pairs
    from advkeras.explain.gradcam import class_gradcam, gradcam_neurons, parse_neuron

    fit = load_sets(Path(args.work) / "exp1_fit_fgsm.npz")["fgsm"]
    nd = NeuronDescriptors(model, append_prediction=True).fit()
    fc, fa = nd.transform(fit.clean), nd.transform(fit.adv)
    sets = RelevantNeuronSets(10.0, n_classes=10).fit(fc[:, :-1], fc[:, -1].astype(int), fa[:, :-1],
                                                      fa[:, -1].astype(int))
    part = first_correct(model, test, args.gradcam_n)
    m = minimal_adversarials(model, part.x, part.y, "fgsm", eps_grid=FGSM_GRID, seed=args.seed, progress=False)
    ok = np.isfinite(m.eps) & (m.eps > 0)
    xc, xa = part.x[ok], m.x_adv[ok]
    pc, pa = predict_logits(model, xc, 256).argmax(1), predict_logits(model, xa, 256).argmax(1)
    mask, names = sets.mask("shared"), nd.neuron_names_
    # strongest shared neurons of each class first (the clean set's where a class shares none)
    mask = np.where(mask.any(1, keepdims=True), mask, sets.mask("clean"))
    weight = np.abs(sets.W_clean_) * mask.T
    strongest = [np.argsort(-weight[:, c])[:args.gradcam_top] for c in pc]
    top = [names[idx][weight[idx, c] > 0] for idx, c in zip(strongest, pc)]
    maps = {v: {} for v in ("energy", "isolated", "class")}
    for neuron in sorted({n for t in top for n in t}):
        rows = [i for i, t in enumerate(top) if neuron in t]
        x2, cls2 = np.r_[xc[rows], xa[rows]], np.r_[pc[rows], pa[rows]]
        e = gradcam_neurons(model, x2, neuron)
        iso = gradcam_neurons(model, x2, neuron, variant="isolated", class_index=cls2)
        cg = class_gradcam(model, x2, parse_neuron(neuron)[0], class_index=cls2)
        for j, i in enumerate(rows):
            for v, arr in (("energy", e), ("isolated", iso), ("class", cg)):
                maps[v][(i, neuron)] = (arr[j], arr[len(rows) + j])
    keys = list(maps["energy"])
    stats = {}
    for side, k in (("clean", 0), ("adversarial", 1)):
        iso = np.stack([maps["isolated"][key][k] for key in keys])
        ene = np.stack([maps["energy"][key][k] for key in keys])
        cls = np.stack([maps["class"][key][k] for key in keys])
        empty = iso.reshape(len(keys), -1).max(1) == 0
        corr = lambda a, b: float(np.nanmean([np.corrcoef(u.ravel(), w.ravel())[0, 1]  # noqa: E731
                                               for u, w in zip(a, b) if u.std() > 0 and w.std() > 0]))
        stats[side] = {"pairs": len(keys), "isolated_empty_share": float(empty.mean()),
                       "corr_isolated_vs_energy": corr(iso[~empty], ene[~empty]),
                       "corr_isolated_vs_class": corr(iso[~empty], cls[~empty]),
                       "corr_energy_vs_class": corr(ene, cls),
                       "mean_abs_diff_isolated_vs_energy": float(np.abs(iso - ene).mean()),
                       "mean_abs_diff_isolated_vs_class": float(np.abs(iso - cls).mean())}
    show = [i for i, t in enumerate(top) if len(t)][:4]
    if not show:
        raise SystemExit("no image has a relevant neuron to show; raise --gradcam-n or mu.")
    first = {i: top[i][0] for i in show}
    cams = {f"{title}": (np.stack([maps[v][(i, first[i])][0] for i in show]),
                         np.stack([maps[v][(i, first[i])][1] for i in show]))
            for v, title in (("energy", "energy (ours)"), ("isolated", "isolated (paper)"), ("class", "class GradCAM"))}
    fig = FIGURES / "cifar10_gradcam_variants.png"
    FIGURES.mkdir(parents=True, exist_ok=True)
    plot_gradcam_pairs(xc[show], xa[show], cams, fig,
                       captions=[f"{CIFAR_NAMES[pc[i]]}->{CIFAR_NAMES[pa[i]]} {first[i].split('/')[1]}" for i in show])
    return {"n_pairs_images": int(ok.sum()), "top_per_class": args.gradcam_top, "stats": stats, "figure": str(fig),
            "shown": [{"clean_class": int(pc[i]), "adv_class": int(pa[i]), "neuron": first[i]} for i in show]}


def _cell(r: dict | None) -> str:
    if r is None:
        return "-"
    if r.get("empty"):
        return "empty set"
    return f"{r['accuracy']:.3f} / {r['balanced_accuracy']:.3f} / {r['auc']:.3f}"


def render_exp1(d: dict) -> str:
    rows = d["rows"]
    out = [f"Command: `{d['command']}` (seed {d['seed']}); DenseNet-mini held-out accuracy "
           f"{d['classifier']['accuracy']:.3f} (balanced {d['classifier']['balanced_accuracy']:.3f}) on "
           f"{d['classifier']['n']} test images; {d['n_neurons']} neurons ({len(d['layers'])} conv layers).", "",
           "| attack | setting | fit: clean / adv | test: clean / adv | success (test) | median L2 (test) |",
           "|---|---|---|---|---|---|"]
    for a, info in d["attacks"].items():
        f, t = info["fit"], info["test"]
        out.append(f"| {a} | {info['label']} | {f['n_clean']} / {f['n_adv']} | {t['n_clean']} / {t['n_adv']} | "
                   f"{t['success_rate_on_correct']:.3f} | {t['median_l2']:.3f} |")
    out += ["", "Each cell: ours accuracy / balanced accuracy / AUC, then the paper's accuracy (Table 2) in "
            "brackets.", "",
            "| set | attack | with label mu=100 | mu=20 | mu=10 | without label mu=100 | mu=20 | mu=10 |",
            "|---|---|---|---|---|---|---|---|"]
    for (s, a), paper in PAPER_TABLE2.items():
        cells = []
        for lab in (True, False):
            for mu in (100, 20, 10):
                hit = [r for r in rows if r["detector"] == "relevant-neurons" and r["neuron_set"] == s
                       and r["test"] == a and r["with_label"] == lab and r["mu"] == mu]
                cells.append(f"{_cell(hit[0] if hit else None)} ({paper[lab][mu]:.3f})")
        out.append(f"| {s} | {a} | " + " | ".join(cells) + " |")
    for peer in ("feature-squeezing", "mahalanobis"):
        cells = [_cell(next((r for r in rows if r["detector"] == peer and r["test"] == a), None))
                 for a in ("fgsm", "jsma", "cw")]
        out.append(f"| {peer} | fgsm / jsma / cw | " + " | ".join(cells) + " | | | |")
    out += ["", "Neurons selected per class (mean over classes, % of all neurons) and solver convergence:", "",
            "| attack | mu | clean | adv | shared | sym_diff | converged (clean / adv) |",
            "|---|---|---|---|---|---|---|"]
    for a, per_mu in d["neuron_sets"].items():
        for mu, s in per_mu.items():
            cells = [f"{s['sets'][n]['mean_per_class']:.1f} ({s['sets'][n]['pct_per_class']:.1f} %)"
                     for n in ("clean", "adv", "shared", "sym_diff")]
            out.append(f"| {a} | {mu} | " + " | ".join(cells) +
                       f" | {s['solver']['clean']['converged']} / {s['solver']['adv']['converged']} |")
    return "\n".join(out)


def render_exp2(d: dict) -> str:
    rows = d["rows"]
    out = [f"Command: `{d['command']}` (seed {d['seed']}); the first {d['n_images']} correctly predicted test "
           "images (classes interleaved).", "",
           "| attack | clean / adv | success | median L2 |", "|---|---|---|---|"]
    for a, info in d["attacks"].items():
        out.append(f"| {a} | {info['n_clean']} / {info['n_adv']} | {info['success_rate_on_correct']:.3f} | "
                   f"{info['median_l2']:.3f} |")
    out += ["", "Each cell: accuracy / TPR / FPR / balanced accuracy / AUC on the 100 clean images and their "
            "successful adversarials; paper's Table 4 accuracy in brackets (its Feature Squeezing and NIC "
            "numbers are quoted from those papers, not run on its images).", "",
            "| attack | ours mu=10 (shared, label) | ours mu=20 (shared, label) | mu=10 without label | "
            "mu=20 without label | Feature Squeezing | NIC (paper) |", "|---|---|---|---|---|---|---|"]
    def full(r: dict | None) -> str:
        if r is None or r.get("empty"):
            return "-" if r is None else "empty set"
        return " / ".join(f"{r[k]:.3f}" for k in ("accuracy", "tpr", "fpr", "balanced_accuracy", "auc"))

    for a in d["attacks"]:
        p = PAPER_TABLE4[a.split("@")[0].split("_")[0]]
        def get(a=a, **kw) -> dict | None:
            return next((r for r in rows if r["test"] == a and all(r.get(k) == v for k, v in kw.items())), None)

        cells = [f"{full(get(detector='relevant-neurons', mu=10.0, with_label=True))} ({p['ours_mu10']:.3f})",
                 f"{full(get(detector='relevant-neurons', mu=20.0, with_label=True))} ({p['ours_mu20']:.3f})",
                 full(get(detector="relevant-neurons", mu=10.0, with_label=False)),
                 full(get(detector="relevant-neurons", mu=20.0, with_label=False)),
                 f"{full(get(detector='feature-squeezing'))} ({p['feature_squeezing']:.3f})", f"({p['nic']:.3f})"]
        out.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def merge(runs: list[dict]) -> dict:
    """One result from runs of the same stage on different attacks (same model and seed)."""
    d = {**runs[0], "attacks": {}, "rows": [], "neuron_sets": {}}
    d["command"] = "`; `".join(r["command"] for r in runs)
    for r in runs:
        d["attacks"].update(r["attacks"])
        d["rows"] += r["rows"]
        d["neuron_sets"].update(r.get("neuron_sets", {}))
    return d


def render(paths: list[str]) -> str:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    out = []
    exp1_runs = [d for d in runs if d.get("stage") == "exp1"]
    if exp1_runs:
        out.append(render_exp1(merge(exp1_runs)))
    exp2_runs = [d for d in runs if d.get("stage") == "exp2"]
    if exp2_runs:
        out.append(render_exp2(merge(exp2_runs)))
    return "\n\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--render", nargs="+", default=None, help="print Markdown tables from result JSON files")
    ap.add_argument("--stage", choices=["train", "exp1", "exp2", "gradcam"],
                    help="train: only train (and cache in --work) the classifier; exp1/exp2 train it first if needed")
    ap.add_argument("--data-dir", default="/work/shared/data/cifar10_test")
    ap.add_argument("--work", default="/tmp/rn_cifar", help="folder for the trained model and Exp-1 fitting sets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n-fit", type=int, default=300, help="validation images attacked for fitting (Exp-1)")
    ap.add_argument("--n-test", type=int, default=300, help="unseen test images attacked for testing (Exp-1)")
    ap.add_argument("--exp2-n", type=int, default=100, help="first correctly predicted test images (Exp-2)")
    ap.add_argument("--cw-steps", type=int, default=100, help="CW-L2 steps per binary-search step in Exp-1")
    ap.add_argument("--exp2-cw-steps", type=int, default=1000, help="CW-L2 steps per binary-search step in Exp-2")
    ap.add_argument("--gradcam-n", type=int, default=30, help="first correctly predicted test images (gradcam)")
    ap.add_argument("--gradcam-top", type=int, default=3, help="strongest shared neurons per class (gradcam)")
    ap.add_argument("--jsma-gamma", type=float, default=0.05, help="share of features JSMA may change (Exp-1)")
    ap.add_argument("--mus", default="10,20,100")
    ap.add_argument("--sets", default="shared,clean,sym_diff")
    ap.add_argument("--attacks", default="fgsm,jsma,cw")
    ap.add_argument("--n-estimators", type=int, default=1000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.render:
        print(render(args.render))
        return
    if not args.stage:
        ap.error("--stage is required (or --render)")
    start = time.perf_counter()
    model, ds, train, val, test, history = model_and_parts(args)
    clf = evaluate_classifier(model, test)
    clf["n"] = len(test)
    print(f"cifar10 densenet_mini: held-out accuracy {clf['accuracy']:.3f} ({time.perf_counter() - start:.0f} s)",
          flush=True)
    skip = {"render", "out"}
    command = "python scripts/relevant_neurons_cifar10.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in skip and v is not None)
    base = {"command": command, "seed": args.seed, "stage": args.stage, "classifier": clf, "training": history,
            "split_sizes": [len(train), len(val), len(test)]}
    if args.stage == "train":
        out = Path(args.out or Path(args.work) / "train_metrics.json")
        write_json(out, {**base, "seconds": time.perf_counter() - start})
        print(f"wrote {out}")
        return
    if args.stage == "gradcam":
        result = {**base, **gradcam_stage(args, model, test)}
        out = Path(args.out or "docs/results/relevant_neurons_cifar10_gradcam.json")
    elif args.stage == "exp1":
        result = {**base, **exp1(args, model, train, val, test, clf)}
        out = Path(args.out or f"docs/results/relevant_neurons_cifar10_{args.attacks.replace(',', '_')}.json")
    else:
        result = {**base, **exp2(args, model, test)}
        out = Path(args.out or f"docs/results/relevant_neurons_cifar10_exp2_{args.attacks.replace(',', '_')}.json")
    result["seconds"] = time.perf_counter() - start
    write_json(out, result)
    print(f"wrote {out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
