"""Adaptive attacks inside the assessment: the settings, and the detector rows every detector stage adds."""
from __future__ import annotations

import logging

import numpy as np

from advkeras.adaptive import AdaptiveDetectorResult, DetectorTarget, adaptive_row, attach_adaptive, attack_detector
from advkeras.assess.config import section
from advkeras.assess.context import RunContext
from advkeras.data.sampling import stratified_subset

log = logging.getLogger(__name__)


def settings(config: dict) -> dict:
    """The `adaptive` section: the packaged defaults merged with the config's."""
    return section(config, "adaptive")


def detector_attack_row(ctx: RunContext, rows: list[dict], target: DetectorTarget, eps: float,
                        clean_scores: np.ndarray, calibration_scores: np.ndarray,
                        **extra) -> tuple[dict | None, AdaptiveDetectorResult | None]:
    """Attack `target` adaptively at `eps` on a stratified part of the run's eval set; the row is appended to
    `rows` and its detection at 5 % FPR put beside the detector's non-adaptive rows at that eps. Returns the
    row and the attack's result (None, None when the config switches detector attacks off)."""
    cfg = settings(ctx.config)
    if not (cfg["enabled"] and cfg["detectors"]):
        return None, None
    ev = stratified_subset(ctx.eval_set(), int(cfg["max_images"]), seed=ctx.seed)
    res = attack_detector(ctx.model, target, ev.x, ev.y, eps, lambdas=cfg["lambdas"], steps=int(cfg["detector_steps"]),
                          search_iterations=int(cfg["search_iterations"]), seed=ctx.seed)
    row = adaptive_row(res, target.name, clean_scores, calibration_scores, **extra)
    attach_adaptive(rows, row)
    rows.append(row)
    log.info("%s, adaptive at eps %.4f: %d of %d fooled unnoticed, detection at 5%% FPR %s", target.name, eps,
             row["evasion_k"], res.n, "n/a" if row["tpr_at_5"] is None else f"{row['tpr_at_5']:.3f}")
    return row, res
