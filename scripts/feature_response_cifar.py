"""The feature-response detection table (Amirian et al. 2018) on CIFAR-10, the paper's attacks side by side.

The paper ran VGG19 on the ImageNet validation set with foolbox 1.x attacks at their defaults, which search
the smallest perturbation that fools the model (FGSM and the gradient attack walk an eps grid upwards and
stop at the first success). ImageNet weights cannot be had here, so this is the closest natural-image
setting we have: a vgg_mini trained on part of the shared CIFAR-10 JPEGs (stratified random split
70/15/15 %, `split_random(seed)`), thresholds from clean validation images, detection of the adversarials
made from correctly classified held-out images. Two attack settings:

- paper: FGSM and the L2 gradient attack at each image's minimal eps on a grid
  (`advkeras.attacks.minimal`), DeepFool (minimal L2 by construction), Boundary with foolbox 1.x's
  5,000 steps, one-pixel (ART differential evolution);
- default (advkeras' fixed budgets): FGSM at 8/255, L2 fast gradient at eps 1.0, Boundary 1,000 steps
  (DeepFool and one-pixel take no budget: the same adversarials serve both).

Per attack, for a sweep of entropy definitions (h = normalised magnitude or grey-level histogram) and
window sizes: AUC and detection rate at 1/5/10 % FPR, with the FPR reached on clean test images; ROC
curves via `advkeras.evaluation.roc_plot`.

    python scripts/feature_response_cifar.py --seed 0 --data /work/shared/data/cifar10_test
    python scripts/feature_response_cifar.py --summarise docs/results/feature_responses_cifar10_seed*.json
    python scripts/feature_response_cifar.py --seed 0 --data mnist --epochs 3 --attacks fgsm gradient deepfool \
        --fgsm-eps 0.2 --fgm-eps 2.0 --roc-configs --out docs/results/feature_responses_mnist_sweep_seed0.json
        # the same sweep on MNIST/LeNet, where the detector works
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from advkeras.attacks import generate  # noqa: E402
from advkeras.attacks.minimal import minimal_adversarials  # noqa: E402
from advkeras.data import load_image_folder, load_sample, split_random, stratified_subset  # noqa: E402
from advkeras.detectors.feature_response import FeatureResponseDetector, mean_local_entropy  # noqa: E402
from advkeras.detectors.feature_response_plot import plot_feature_responses  # noqa: E402
from advkeras.evaluation.detection import detection_metrics  # noqa: E402
from advkeras.evaluation.roc_plot import plot_roc  # noqa: E402
from advkeras.evaluation.traffic import foolbox_gave_up  # noqa: E402
from advkeras.models import (build_classifier, evaluate_classifier, load_model, save_model,  # noqa: E402
                             train_classifier)
from advkeras.runs import write_json  # noqa: E402

# The paper's table (VGG19, ImageNet validation): detection rate at 1/5/10 % FPR; AUC 0.990 "several attacks".
PAPER = {"fgsm": (0.954, 0.974, 0.983), "gradient": (0.922, 0.954, 0.969), "onepixel": (0.917, 0.951, 0.966),
         "deepfool": (0.936, 0.963, 0.976), "boundary": (0.934, 0.960, 0.972)}
FGSM_GRID = tuple(e / 255 for e in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 255))
L2_GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)  # minimal_adversarials takes eps <= 1
FPRS = ("0.01", "0.05", "0.1")


def train_or_load(path: Path, train, val, seed: int, epochs: int, backbone: str = "vgg_mini"):
    if path.is_file():
        return load_model(path)
    model = build_classifier(backbone, train.input_shape, train.n_classes, seed=seed)
    if backbone == "lenet":  # the MNIST check: the recipe of scripts/feature_response_table.py
        train_classifier(model, train.subset(np.arange(6000)), val.subset(np.arange(1000)), epochs=epochs, seed=seed)
    else:
        train_classifier(model, train, val, epochs=epochs, patience=5, augment=True, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, path, overwrite=True)
    return model


def _minimal(model, part, attack: str, grid, seed: int) -> dict:
    t0 = time.perf_counter()
    res = minimal_adversarials(model, part.x, part.y, attack, eps_grid=grid, seed=seed, progress=False)
    ok = np.isfinite(res.eps) & (res.eps > 0)  # eps 0: wrong before the attack; inf: no grid eps works
    return {"x_adv": res.x_adv[ok], "n": len(part), "n_correct": int((res.eps > 0).sum()), "n_adv": int(ok.sum()),
            "median_eps": float(np.median(res.eps[ok])) if ok.any() else None,
            "median_l2": float(np.median(res.l2[ok])) if ok.any() else None, "seconds": time.perf_counter() - t0,
            "x_orig": part.x[ok]}


def _budget(model, part, attack: str, eps, seed: int, **params) -> dict:
    t0 = time.perf_counter()
    try:
        res = generate(model, part.x, part.y, attack, eps=eps, seed=seed, progress=False, **params)
    except (AssertionError, ValueError) as exc:
        if not foolbox_gave_up(exc):
            raise
        return {"n": len(part), "aborted": str(exc)}
    ok = res.fooled  # right before the attack, wrong after
    return {"x_adv": res.clipped[ok], "n": len(part), "n_correct": int(res.correct.sum()), "n_adv": int(ok.sum()),
            "eps": eps, "params": params, "median_l2": float(np.median(res.l2[ok])) if ok.any() else None,
            "seconds": time.perf_counter() - t0, "x_orig": res.x[ok]}


def run_attacks(model, test, args) -> dict[str, dict]:
    """name -> adversarials and counts; names are setting/attack."""
    fast = stratified_subset(test, args.n, seed=args.seed)
    slow = stratified_subset(test, args.n_slow, seed=args.seed)
    plan = [("paper/fgsm", lambda: _minimal(model, fast, "fgsm", FGSM_GRID, args.seed)),
            ("paper/gradient", lambda: _minimal(model, fast, "fgm", L2_GRID, args.seed)),
            ("both/deepfool", lambda: _budget(model, fast, "deepfool", None, args.seed)),
            ("paper/boundary", lambda: _budget(model, slow, "boundary", None, args.seed, steps=args.boundary_steps)),
            ("both/onepixel", lambda: _budget(model, slow, "onepixel", None, args.seed, max_iter=args.onepixel_iter)),
            ("default/fgsm", lambda: _budget(model, fast, "fgsm", args.fgsm_eps, args.seed)),
            ("default/gradient", lambda: _budget(model, fast, "fgm", args.fgm_eps, args.seed)),
            ("default/boundary", lambda: _budget(model, slow, "boundary", None, args.seed, steps=1000))]
    out = {}
    for name, run in plan:
        if args.attacks and name.split("/")[1] not in args.attacks:
            continue
        out[name] = run()
        r = out[name]
        print(f"{name}: {r.get('n_adv', 0)} adversarials from {r.get('n_correct', '?')} correct of {r['n']} "
              f"({r.get('seconds', 0):.0f} s){' ABORTED' if 'aborted' in r else ''}", flush=True)
    return out


def configs(args) -> list[dict]:
    out = [{"distribution": "magnitude", "window": w, "bins": 256} for w in args.windows]
    out += [{"distribution": "histogram", "window": w, "bins": b} for b in args.bins for w in args.windows]
    return out


def tag(c: dict) -> str:
    return f"{c['distribution']}_w{c['window']}" + (f"_b{c['bins']}" if c["distribution"] == "histogram" else "")


def score_all(responses: dict[str, np.ndarray], cfgs: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """config tag -> set name -> mean local entropy per image (higher = flagged, the paper's rule)."""
    def entropy(r: np.ndarray, c: dict) -> np.ndarray:  # in chunks: a 16-window histogram holds 256 x 256 pairs
        return np.concatenate([mean_local_entropy(r[i:i + 100], c["window"], None, c["distribution"],
                                                  c["bins"]).numpy() for i in range(0, len(r), 100)])

    return {tag(c): {k: entropy(r, c) for k, r in responses.items()} for c in cfgs}


def rows(scores: dict, attacks: dict) -> dict:
    out = {}
    for t, s in scores.items():
        out[t] = {}
        for name, a in attacks.items():
            if a.get("n_adv", 0) < 2:
                out[t][name] = None
                continue
            m = detection_metrics(s["clean"], s[name], calibration_scores=s["calibration"])
            out[t][name] = {"auc": m["auc"], **{f"tpr_at_{f}": m["at_fpr"][f]["tpr"] for f in FPRS},
                            **{f"fpr_reached_{f}": m["at_fpr"][f]["fpr"] for f in FPRS}}
    return out


def run(args) -> None:
    t_start = time.perf_counter()
    mnist = args.data == "mnist"  # the setting where the detector works, for the same sweep
    ds = load_sample("mnist") if mnist else load_image_folder(args.data, progress=False)
    train, val, test = split_random(ds, seed=args.seed)
    backbone, name = ("lenet", "mnist") if mnist else ("vgg_mini", "cifar10")
    model = train_or_load(Path(args.model_dir) / f"{backbone}_{name}_seed{args.seed}.keras", train, val, args.seed,
                          args.epochs, backbone)
    ev = evaluate_classifier(model, test)
    print(f"held-out accuracy {ev['accuracy']:.3f} (balanced {ev['balanced_accuracy']:.3f}) on {len(test)}", flush=True)
    attacks = run_attacks(model, test, args)
    det = FeatureResponseDetector(model)  # responses only: the entropies of every config come from them
    calib = stratified_subset(val, args.n_calibration, seed=args.seed).x
    clean = stratified_subset(test, args.n_clean, seed=args.seed).x
    responses = {"calibration": det.responses(calib), "clean": det.responses(clean),
                 **{k: det.responses(a["x_adv"]) for k, a in attacks.items() if a.get("n_adv", 0)}}
    cfgs = configs(args)
    scores = score_all(responses, cfgs)
    table = rows(scores, attacks)
    fig_dir = Path(args.fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    for t in dict.fromkeys([tag(cfgs[0] | {"window": 4}), *args.roc_configs]):
        if t not in scores:
            continue
        for setting in ("paper", "default"):
            curves = {name.split("/")[1]: (scores[t]["clean"], scores[t][name]) for name in attacks
                      if name.split("/")[0] in (setting, "both") and attacks[name].get("n_adv", 0) >= 2}
            path = fig_dir / f"feature_responses_{name}_roc_{setting}_{t}_seed{args.seed}.png"
            title = f"{name} {backbone}, {setting} attacks, {t.replace('_', ' ')}, seed {args.seed}"
            plot_roc(curves, path, title=title)
            figures[f"{setting}/{t}"] = str(path)
            print(f"wrote {path}", flush=True)
    if "paper/fgsm" in attacks and attacks["paper/fgsm"]["n_adv"]:
        a = attacks["paper/fgsm"]
        path = fig_dir / f"feature_responses_{name}_maps_fgsm_seed{args.seed}.png"
        plot_feature_responses(det, a["x_orig"][:3], a["x_adv"][:3], path,
                               title="CIFAR-10, minimal-eps FGSM: original vs adversarial, response, local entropy "
                                     "(magnitude h, window 4)")
        figures["maps/fgsm"] = str(path)
    attack_info = {k: {kk: vv for kk, vv in a.items() if kk not in ("x_adv", "x_orig")} for k, a in attacks.items()}
    write_json(Path(args.out), {
        "command": "python scripts/feature_response_cifar.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if v not in (None, []) and k != "summarise"),
        "seed": args.seed, "split": "split_random(seed) 70/15/15 % stratified by class",
        "n_train": len(train), "n_val": len(val), "n_test": len(test), "model": backbone, "data": name,
        "held_out": {k: ev[k] for k in ("accuracy", "balanced_accuracy")},
        "n_calibration": len(calib), "n_clean": len(clean), "attacks": attack_info, "configs": cfgs,
        "detection": table, "paper": PAPER, "figures": figures, "seconds": time.perf_counter() - t_start})
    print(f"wrote {args.out} ({time.perf_counter() - t_start:.0f} s)", flush=True)


def summarise(paths: list[str]) -> None:
    """Mean and spread over seeds of AUC and TPR per (config, attack), printed as markdown rows."""
    import json

    runs = [json.loads(Path(p).read_text()) for p in paths]
    accuracy = ", ".join(f"{r['held_out']['accuracy']:.3f}" for r in runs)
    print(f"seeds {[r['seed'] for r in runs]}; held-out accuracy {accuracy}")
    for t in runs[0]["detection"]:
        for name in runs[0]["detection"][t]:
            vals = [r["detection"][t].get(name) for r in runs]
            vals = [v for v in vals if v]
            if not vals:
                continue
            cell = lambda k: f"{np.mean([v[k] for v in vals]):.3f} ± {np.std([v[k] for v in vals]):.3f}"  # noqa: E731
            n_adv = "/".join(str(r["attacks"][name].get("n_adv", 0)) for r in runs)
            print(f"| {t} | {name} | {n_adv} | {cell('auc')} | {cell('tpr_at_0.01')} | {cell('tpr_at_0.05')} | "
                  f"{cell('tpr_at_0.1')} | {cell('fpr_reached_0.05')} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="../shared/data/cifar10_test",
                    help="CIFAR-10 JPEGs in <class>/ folders, or 'mnist' (LeNet on the bundled digits, the check)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--n", type=int, default=300, help="held-out images attacked (FGSM, gradient, DeepFool)")
    ap.add_argument("--n-slow", type=int, default=60, help="held-out images for Boundary and one-pixel")
    ap.add_argument("--n-calibration", type=int, default=1000, help="clean validation images for the thresholds")
    ap.add_argument("--n-clean", type=int, default=1000, help="clean held-out images the FPR and AUC are taken on")
    ap.add_argument("--boundary-steps", type=int, default=5000, help="paper setting (foolbox 1.x default)")
    ap.add_argument("--onepixel-iter", type=int, default=10, help="differential-evolution iterations (ART)")
    ap.add_argument("--fgsm-eps", type=float, default=8 / 255, help="default setting's FGSM budget (Linf)")
    ap.add_argument("--fgm-eps", type=float, default=1.0, help="default setting's L2 fast-gradient budget")
    ap.add_argument("--attacks", nargs="*", default=[], help="restrict to these (fgsm gradient deepfool ...)")
    ap.add_argument("--windows", nargs="+", type=int, default=[2, 4, 8, 16])
    ap.add_argument("--bins", nargs="+", type=int, default=[256, 16], help="grey levels of the histogram h")
    ap.add_argument("--roc-configs", nargs="*", default=["histogram_w8_b256"],
                    help="configs drawn besides magnitude_w4 (the default detector)")
    ap.add_argument("--model-dir", default="runs/feature_response_cifar")
    ap.add_argument("--fig-dir", default="docs/results/figures")
    ap.add_argument("--out", default=None, help="default: docs/results/feature_responses_cifar10_seed<S>.json")
    ap.add_argument("--summarise", nargs="*", default=None, help="merge result JSONs (mean over seeds) and exit")
    args = ap.parse_args()
    if args.summarise is not None:
        return summarise(args.summarise)
    args.out = args.out or f"docs/results/feature_responses_cifar10_seed{args.seed}.json"
    run(args)


if __name__ == "__main__":
    main()
