"""Reproduce the feature-response detection table (Amirian et al. 2018) on IDC (vgg_mini) and MNIST (LeNet).

For each attack (FGSM, L2 fast gradient, DeepFool, Boundary, one-pixel): attack success rate, and for
the successful adversarials the AUC and detection rate at 1/5/10 % FPR of the local-spatial-entropy
detector, with thresholds from clean validation images. Also the native-vs-iNNvestigate agreement of
guided backprop, and one figure per dataset and attack.

    python scripts/feature_response_table.py --seed 0
writes docs/results/feature_responses.json and docs/results/figures/feature_responses/*.png.
Boundary and one-pixel run on fewer images (--n-slow) because they are slow on CPU.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from advkeras.attacks import attack_names, generate  # noqa: E402
from advkeras.data import load_sample, split_by_group, split_random, stratified_subset  # noqa: E402
from advkeras.detectors.feature_response import FeatureResponseDetector  # noqa: E402
from advkeras.detectors.feature_response_plot import plot_feature_responses  # noqa: E402
from advkeras.evaluation.detection import detection_metrics  # noqa: E402
from advkeras.explain.guided_backprop import guided_backprop  # noqa: E402
from advkeras.explain.innvestigate_worker import InnvestigateWorker  # noqa: E402
from advkeras.models import (build_classifier, evaluate_classifier, load_model, save_model,  # noqa: E402
                             train_classifier)
from advkeras.evaluation.traffic import foolbox_gave_up  # noqa: E402
from advkeras.runs import write_json  # noqa: E402

# (attack, eps on IDC, eps on MNIST, slow?, params) -- eps None: minimisation attack (no budget).
ATTACKS = [("fgsm", 4 / 255, 0.2, False, {}), ("fgm", 1.0, 2.0, False, {}), ("deepfool", None, None, False, {}),
           ("boundary", None, None, True, {}), ("onepixel", None, None, True, {"max_iter": 10})]


def _model(name: str, train, val, seed: int, epochs: int, path: str | None):
    if path:
        return load_model(path)
    if name == "idc":
        model = build_classifier("vgg_mini", train.input_shape, 2, seed=seed)
        train_classifier(model, train, val, epochs=epochs, patience=epochs, augment=True, seed=seed)
    else:
        model = build_classifier("lenet", (28, 28, 1), 10, seed=seed)
        train_classifier(model, train.subset(np.arange(6000)), val.subset(np.arange(1000)), epochs=epochs, seed=seed)
    return model


def agreement(model, x: np.ndarray) -> dict:
    """Per-image correlation of native and iNNvestigate guided backprop / deconvnet maps."""
    out = {}
    with InnvestigateWorker(model) as worker:
        for method in ("guided_backprop", "deconvnet"):
            ours, theirs = guided_backprop(model, x, method=method), worker.analyze(x, method)
            r = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ours, theirs)]
            out[method] = {"n": len(r), "min_correlation": float(np.min(r)), "mean_correlation": float(np.mean(r))}
    return out


def run_dataset(name: str, args, fig_dir: Path) -> dict:
    if name == "idc":
        train, val, test = split_by_group(load_sample("idc"), seed=args.seed)
    else:
        train, val, test = split_random(load_sample("mnist"), seed=args.seed)
    start = time.perf_counter()
    model = _model(name, train, val, args.seed, args.idc_epochs if name == "idc" else args.mnist_epochs,
                   args.idc_model if name == "idc" else None)
    if args.save_models and not (name == "idc" and args.idc_model):
        save_model(model, Path(args.save_models) / f"{name}.keras", overwrite=True)
    acc = evaluate_classifier(model, test)["accuracy"]
    print(f"{name}: held-out accuracy {acc:.3f}", flush=True)
    calib = stratified_subset(val, args.n_calibration, seed=args.seed).x  # by class, across patients
    dets = {d: FeatureResponseDetector(model, window=args.window, direction=d).fit(calib)
            for d in ("higher", "two-sided")}
    held_out = stratified_subset(test, args.n, seed=args.seed)
    clean_x, clean_y = held_out.x, held_out.y
    clean = {d: det.score_samples(clean_x) for d, det in dets.items()}
    rows = []
    for attack, eps_idc, eps_mnist, slow, params in ATTACKS:
        if attack not in attack_names():
            print(f"{attack}: not available in advkeras.attacks yet; skipped", flush=True)
            continue
        eps = eps_idc if name == "idc" else eps_mnist
        n = args.n_slow if slow else args.n
        t0 = time.perf_counter()
        part = stratified_subset(test, n, seed=args.seed)
        try:
            res = generate(model, part.x, part.y, attack, eps=eps, seed=args.seed, progress=False, **params)
        except (AssertionError, ValueError) as exc:
            if not foolbox_gave_up(exc):
                raise
            print(f"{name} {attack}: foolbox gave up ({exc}); no row", flush=True)
            rows.append({"attack": attack, "eps": eps, "n": n, "aborted": str(exc)})
            continue
        row = {"attack": attack, "backend": res.backend, "eps": eps, "params": params, "n": n,
               "success_rate": res.success_rate,
               "success_rate_on_correct": res.success_rate_on_correct, "n_adv": int(res.success.sum()),
               "median_l2_success": res.summary()["median_l2_success"], "attack_seconds": time.perf_counter() - t0}
        adv = res.clipped[res.fooled]  # changed from right to wrong by the attack
        row["n_adv_from_correct"] = int(len(adv))
        if len(adv) >= 2:
            for d, det in dets.items():
                m = detection_metrics(clean[d], det.score_samples(adv), calibration_scores=det.calibration_scores_)
                row[d] = {"auc": m["auc"], **{f"tpr_at_{k}": v["tpr"] for k, v in m["at_fpr"].items()},
                          **{f"fpr_reached_{k}": v["fpr"] for k, v in m["at_fpr"].items()}}
            idx = np.flatnonzero(res.fooled)[:2]
            plot_feature_responses(dets["higher"], res.x[idx], res.clipped[idx], fig_dir / f"{name}_{attack}.png",
                                   title=f"{name}, {attack}: original vs adversarial, feature response, local entropy")
        rows.append(row)
        h = {k: float("nan") for k in ("auc", "tpr_at_0.01", "tpr_at_0.05", "tpr_at_0.1")} | row.get("higher", {})
        print(f"{name} {attack}: success {res.success_rate:.3f} ({row['n_adv']}/{n}), AUC {h['auc']:.3f}, "
              f"TPR@1/5/10 {h['tpr_at_0.01']:.3f}/{h['tpr_at_0.05']:.3f}/{h['tpr_at_0.1']:.3f}", flush=True)
    return {"model": model.name, "held_out_accuracy": acc, "n_calibration": len(calib), "n_clean": len(clean_x),
            "thresholds": {f"{k:g}": v for k, v in dets["higher"].thresholds_.items()},
            "agreement_native_vs_innvestigate": agreement(model, test.x[:32]), "attacks": rows,
            "seconds": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--datasets", nargs="+", default=["idc", "mnist"], choices=["idc", "mnist"])
    ap.add_argument("--n", type=int, default=200, help="held-out images attacked (fast attacks)")
    ap.add_argument("--n-slow", type=int, default=20, help="held-out images for boundary and one-pixel")
    ap.add_argument("--n-calibration", type=int, default=300, help="clean validation images for the thresholds")
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--idc-epochs", type=int, default=10)
    ap.add_argument("--mnist-epochs", type=int, default=3)
    ap.add_argument("--idc-model", default=None, help="reuse a trained .keras IDC classifier instead of training")
    ap.add_argument("--save-models", default="runs/feature_response_table",
                    help="folder where the trained classifiers are saved (idc.keras, mnist.keras)")
    ap.add_argument("--out", default="docs/results/feature_responses.json")
    args = ap.parse_args()
    fig_dir = Path(args.out).parent / "figures" / Path(args.out).stem  # feature_responses for the default --out
    fig_dir.mkdir(parents=True, exist_ok=True)
    results = {d: run_dataset(d, args, fig_dir) for d in args.datasets}
    cmd = "python scripts/feature_response_table.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items()
        if v is not None)
    write_json(Path(args.out), {"command": cmd, "seed": args.seed, "window": args.window, "results": results})


if __name__ == "__main__":
    main()
