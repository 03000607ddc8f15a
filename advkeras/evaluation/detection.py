"""Detection metrics shared by every detector: AUC, detection rate (TPR) at a fixed false-positive rate."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from advkeras.errors import InputError


def threshold_at_fpr(clean_scores: np.ndarray, fpr: float) -> float:
    """The score threshold above which at most `fpr` of clean (benign) samples fall.

    Higher scores mean 'more adversarial'; a sample is flagged when score > threshold.
    """
    clean_scores = np.asarray(clean_scores, dtype=np.float64)
    if not 0 <= fpr < 1:
        raise InputError(f"fpr must be in [0, 1), got {fpr}.")
    if clean_scores.size == 0:
        raise InputError("no clean scores to calibrate the threshold on.")
    return float(np.quantile(clean_scores, 1.0 - fpr, method="higher"))


def detection_metrics(clean_scores: np.ndarray, adv_scores: np.ndarray,
                      fprs: Sequence[float] = (0.01, 0.05, 0.10),
                      calibration_scores: np.ndarray | None = None) -> dict:
    """AUC and, for each target FPR, the threshold, the detection rate on adversarials and the FPR
    actually reached on the clean test scores. Thresholds come from `calibration_scores` (held-out
    clean data) when given, else from `clean_scores` itself."""
    clean = np.asarray(clean_scores, dtype=np.float64)
    adv = np.asarray(adv_scores, dtype=np.float64)
    if clean.size == 0 or adv.size == 0:
        raise InputError(f"need clean and adversarial scores, got {clean.size} and {adv.size}.")
    calib = clean if calibration_scores is None else np.asarray(calibration_scores, dtype=np.float64)
    labels = np.r_[np.zeros(len(clean)), np.ones(len(adv))]
    scores = np.r_[clean, adv]
    out = {"n_clean": int(clean.size), "n_adv": int(adv.size), "auc": float(roc_auc_score(labels, scores)),
           "at_fpr": {}}
    for f in fprs:
        thr = threshold_at_fpr(calib, f)
        out["at_fpr"][f"{f:g}"] = {"threshold": thr, "tpr": float((adv > thr).mean()),
                                   "fpr": float((clean > thr).mean())}
    return out


def roc_points(clean_scores: np.ndarray, adv_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) arrays of the ROC curve, for plotting."""
    labels = np.r_[np.zeros(len(clean_scores)), np.ones(len(adv_scores))]
    fpr, tpr, _ = roc_curve(labels, np.r_[clean_scores, adv_scores])
    return fpr, tpr


def binary_detection_metrics(flag_clean: np.ndarray, flag_adv: np.ndarray) -> dict:
    """Detection rate and false-positive rate of a detector that only says yes/no (e.g. disagreement)."""
    flag_clean, flag_adv = np.asarray(flag_clean, bool), np.asarray(flag_adv, bool)
    n = len(flag_clean) + len(flag_adv)
    acc = (np.sum(~flag_clean) + np.sum(flag_adv)) / n if n else float("nan")
    return {"tpr": float(flag_adv.mean()) if len(flag_adv) else None,
            "fpr": float(flag_clean.mean()) if len(flag_clean) else None, "accuracy": float(acc),
            "n_clean": int(len(flag_clean)), "n_adv": int(len(flag_adv))}
