"""Assessment stage: the feature-response (local spatial entropy) detector on every attack of the run."""
from __future__ import annotations

import logging
import time

import numpy as np

from advkeras.adaptive import calibrated_target
from advkeras.assess.adaptive import detector_attack_row
from advkeras.assess.config import section
from advkeras.assess.context import RunContext
from advkeras.detectors.feature_response import FeatureResponseDetector
from advkeras.detectors.feature_response_plot import plot_feature_responses
from advkeras.data.sampling import stratified_subset
from advkeras.evaluation.detection import detection_metrics, detector_row
from advkeras.evaluation.risk import verdict_eps

log = logging.getLogger(__name__)


def stage_feature_response(ctx: RunContext) -> None:
    """Calibrate on clean validation images, score clean held-out images and each attack's successful
    adversarials; record AUC / detection at 1, 5, 10 % FPR and a figure per attack."""
    cfg = section(ctx.config, "feature_response")
    if not cfg["enabled"] or not ctx.adversarials:
        return
    start = time.perf_counter()
    det = FeatureResponseDetector(ctx.model, window=int(cfg["window"]), stride=cfg["stride"], method=cfg["method"],
                                  direction=cfg["direction"])
    det.fit(stratified_subset(ctx.val, int(cfg["max_calibration"]), seed=ctx.seed).in_memory().x)
    ev = ctx.eval_set()
    clean_scores = det.score_samples(ev.x)
    results, rows = {}, []
    for key, res in ctx.adversarials.items():
        adv = res.clipped[res.fooled]  # images the attack changed from right to wrong
        if len(adv) < 2:
            log.info("feature responses: %s has %d successful adversarials; not scored", key, len(adv))
            continue
        m = detection_metrics(clean_scores, det.score_samples(adv), calibration_scores=det.calibration_scores_)
        results[key] = {"success_rate": res.success_rate, **m}
        rows.append(detector_row("feature response", key, m, eps=res.eps))
        if cfg["figure_images"]:
            idx = np.flatnonzero(res.fooled)[:int(cfg["figure_images"])]
            tag = key.replace("@", "_eps").replace(".", "p")
            png = plot_feature_responses(det, res.x[idx], res.clipped[idx],
                                         ctx.figure_path("feature_responses", f"{tag}.png"),
                                         title=f"{key}: original vs adversarial, feature response, local entropy")
            ctx.add_figure("feature_responses", tag, png, f"Feature responses and local entropy, {key} "
                           f"(AUC {m['auc']:.3f})")
        log.info("feature response on %s: AUC %.3f, detection at 5%% FPR %.3f", key, m["auc"],
                 m["at_fpr"]["0.05"]["tpr"])
    eps = verdict_eps(r.eps for r in ctx.adversarials.values() if r.norm == "linf")
    adaptive, _ = (None, None) if eps is None else detector_attack_row(
        ctx, rows, calibrated_target("feature response", det.score_samples, det.calibration_scores_), eps,
        clean_scores, det.calibration_scores_)
    ctx.metrics["feature_response"] = {
        "settings": {k: cfg[k] for k in ("window", "stride", "method", "direction")},
        "n_calibration": det.n_calibration_, "thresholds": {f"{k:g}": v for k, v in det.thresholds_.items()},
        "attacks": results, "adaptive": adaptive, "seconds": time.perf_counter() - start}
    ctx.metrics.setdefault("detector_summary", []).extend(rows)
