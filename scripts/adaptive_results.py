"""Adaptive evaluation on real data: every defense and detector against attacks that know it (docs/results/adaptive.md).

Per seed, runs `advkeras.assess` with the adaptive battery sized up (more images, restarts, queries) and the
stages that do not bear on it switched off, then attacks the two peer detectors (Feature Squeezing with BPDA
through its squeezers, Mahalanobis through its own score) on the same model and images. Collects, per defense,
the worst case with and without the adaptive attacks, and per detector the non-adaptive detection at 5 % FPR
next to the adaptive one and the adaptive attack's success at fooling unnoticed.

    python scripts/adaptive_results.py --data idc --seeds 0 1 2     # ~15 min per seed on 2 CPU cores
    python scripts/adaptive_results.py --data mnist --seeds 0 1 2   # ~3 min per seed
    python scripts/adaptive_results.py --data idc --seeds 0 1 --reuse  # peers only, on finished runs
writes docs/results/adaptive_<data>.json (runs under runs/adaptive_<data>_s<seed>/).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from advkeras.adaptive import (adaptive_row, attack_detector, calibrated_target, differentiable_from,  # noqa: E402
                               attach_adaptive)
from advkeras.assess import RunContext, assess  # noqa: E402
from advkeras.assess.stages import stage_attacks, stage_data  # noqa: E402
from advkeras.data import stratified_subset  # noqa: E402
from advkeras.detectors import FeatureSqueezing, MahalanobisDetector  # noqa: E402
from advkeras.evaluation.detection import detection_metrics, detector_row  # noqa: E402
from advkeras.evaluation.risk import SMALL_EPS, verdict_eps  # noqa: E402
from advkeras.models import load_model  # noqa: E402
from advkeras.runs import write_json  # noqa: E402

ADAPTIVE = {"restarts": 5, "square_iterations": 300, "lambdas": [0.01, 0.1, 1.0, 10.0], "detector_steps": 40,
            "search_iterations": 200, "max_images": 128}
CONFIGS = {
    "idc": {"data": "idc", "max_eval": 320, "prediction_similarity": {"enabled": False},
            "activation_graphs": {"enabled": False}, "defenses": {"max_eval": 160}, "adaptive": ADAPTIVE},
    # MNIST budgets are the field's usual ones (0.1 / 0.2 / 0.3); "small" for the verdicts is still <= 4/255,
    # so the detectors are judged at the smallest budget run, 0.1.
    "mnist": {"data": "mnist", "max_eval": 320, "train": {"epochs": 5},
              "attacks": [{"name": "fgsm", "backend": "foolbox", "eps": [0.1, 0.2]},
                          {"name": "pgd", "backend": "native", "eps": [0.1, 0.2], "params": {"steps": 20}}],
              "prediction_similarity": {"enabled": False}, "activation_graphs": {"enabled": False},
              "defenses": {"names": ["middle-ae", "encoder"], "eps": 0.1, "max_eval": 160,
                           "params": {"middle-ae": {"epochs": 15}, "encoder": {"epochs": 20}}},
              "adaptive": ADAPTIVE},
}
DEFENSE_KEYS = ("defense", "balanced_accuracy", "degenerate", "worst_case_success", "worst_case_ci",
                "worst_case_attack", "worst_case_kind", "non_adaptive_worst_case_success", "attacks_run",
                "original_worst_case_success", "worst_case_n")
DETECTOR_KEYS = ("detector", "attack", "adaptive", "eps", "auc", "tpr_at_5", "fpr_reached", "n_adv",
                 "adaptive_tpr_at_5", "evasion_success", "evasion_ci", "n_attacked", "strategies")


def peers(ctx, seed: int) -> list[dict]:
    """Feature Squeezing and Mahalanobis on the run's model: non-adaptive (the strongest attack of the run at the
    verdict eps) and adaptive, rows in the `detector_summary` schema."""
    eps = verdict_eps(r.eps for r in ctx.adversarials.values() if r.norm == "linf")
    base = max((r for r in ctx.adversarials.values() if r.eps == eps), key=lambda r: r.success_rate_on_correct)
    calib = stratified_subset(ctx.val, 400, seed=seed)
    ev = ctx.eval_set()
    fit_adv = [r for r in ctx.adversarials.values() if r.eps == eps]
    stats = stratified_subset(ctx.train, 2000, seed=seed)
    detectors = {
        "feature squeezing": FeatureSqueezing(ctx.model).fit(calib.x),
        # Mahalanobis without adversarials to fit its layer weights: the last layer's distance (no attack known)
        "mahalanobis": MahalanobisDetector(ctx.model).fit(calib.x, calib.y, X_stats=stats.x, y_stats=stats.y),
    }
    rows = []
    for name, det in detectors.items():
        calib_scores, clean = det.decision_function(calib.x), det.decision_function(ev.x)
        group = []
        for res in fit_adv:
            adv = res.clipped[res.fooled]
            if len(adv) >= 2:
                m = detection_metrics(clean, det.decision_function(adv), calibration_scores=calib_scores)
                group.append(detector_row(name, f"{res.attack}@{res.eps}", m, eps=res.eps))
        diff = differentiable_from(det.differentiable_score, calib.x, exact=True, what="its own score")
        target = calibrated_target(name, det.decision_function, calib_scores, differentiable=diff)
        sub = stratified_subset(ev, ADAPTIVE["max_images"], seed=seed)
        got = attack_detector(ctx.model, target, sub.x, sub.y, eps, lambdas=ADAPTIVE["lambdas"],
                              steps=ADAPTIVE["detector_steps"], search_iterations=ADAPTIVE["search_iterations"],
                              seed=seed)
        row = adaptive_row(got, name, clean, calib_scores)
        attach_adaptive(group, row)
        rows += group + [row]
        print(f"{name}: base {base.attack}@{eps}; adaptive evasion {row['evasion_success']:.3f}, "
              f"detection {row['tpr_at_5']}")
    return rows


def reused(out: Path, seed: int) -> RunContext:
    """The context of a finished `assess` run: its metrics and model, the same data split and, made again with
    the same seed (deterministic), its attacks; what `peers` needs."""
    metrics = json.loads((out / "metrics.json").read_text())
    config = {**metrics["config"], "sanity_checks": {**metrics["config"]["sanity_checks"], "enabled": False}}
    ctx = RunContext(config, out, seed)
    stage_data(ctx)
    ctx.model = load_model(out / "model.keras")
    stage_attacks(ctx)
    ctx.metrics = metrics
    return ctx


def summarise(per_seed: list[dict]) -> dict:
    """Mean and std over seeds: per defense the worst case with and without the adaptive attacks; per detector
    the lowest non-adaptive detection at <= the verdict eps and the adaptive figures."""
    def stats(values):
        v = [x for x in values if x is not None and x == x]
        return {"mean": float(np.mean(v)), "std": float(np.std(v)), "n_seeds": len(v)} if v else None

    defenses = sorted({r["defense"] for s in per_seed for r in s["defenses"]})
    out = {"defenses": {}, "detectors": {}}
    for d in defenses:
        rows = [r for s in per_seed for r in s["defenses"] if r["defense"] == d]
        out["defenses"][d] = {k: stats([r[k] for r in rows]) for k in
                              ("non_adaptive_worst_case_success", "worst_case_success", "original_worst_case_success")}
        out["defenses"][d]["worst_case_kinds"] = [r["worst_case_kind"] for r in rows]
    for name in sorted({r["detector"] for s in per_seed for r in s["detectors"]}):
        plain, adaptive = [], []
        for s in per_seed:
            rows = [r for r in s["detectors"] if r["detector"] == name]
            a = next((r for r in rows if r.get("adaptive")), None)
            small = [r["tpr_at_5"] for r in rows if not r.get("adaptive") and r["tpr_at_5"] is not None
                     and a is not None and abs(r["eps"] - a["eps"]) < 1e-6]
            plain.append(min(small) if small else None)
            adaptive.append(a)
        out["detectors"][name] = {
            "non_adaptive_tpr_at_5_worst": stats(plain),
            "adaptive_tpr_at_5": stats([a and a["tpr_at_5"] for a in adaptive]),
            "adaptive_evasion_success": stats([a and a["evasion_success"] for a in adaptive]),
            "eps": [a and a["eps"] for a in adaptive]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=sorted(CONFIGS), default="idc")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default=None)
    p.add_argument("--reuse", action="store_true", help="take a seed's assessment from its finished run folder "
                   "(its metrics.json and model) and redo only what the peers need: data split and attacks")
    args = p.parse_args()
    per_seed = []
    for seed in args.seeds:
        out = Path(f"runs/adaptive_{args.data}_s{seed}")
        ctx = reused(out, seed) if args.reuse and (out / "metrics.json").is_file() else \
            assess(out, config=CONFIGS[args.data], seed=seed, force=True)
        m = ctx.metrics
        detectors = m.get("detector_summary", []) + peers(ctx, seed)
        per_seed.append({"seed": seed, "seconds": m["seconds"], "model_test": m["model"]["test"]["balanced_accuracy"],
                         "defenses": [{k: r.get(k) for k in DEFENSE_KEYS} for r in m.get("defense_summary", [])],
                         "attack_runs": m.get("defenses", {}).get("attack_runs"),
                         "detectors": [{k: r.get(k) for k in DETECTOR_KEYS} for r in detectors]})
    out = Path(args.out or f"docs/results/adaptive_{args.data}.json")
    write_json(out, {"command": f"python scripts/adaptive_results.py --data {args.data} --seeds "
                                + " ".join(map(str, args.seeds)),
                     "config": CONFIGS[args.data], "small_eps": SMALL_EPS, "seeds": per_seed,
                     "summary": summarise(per_seed)})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
