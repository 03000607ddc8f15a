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


MIN_EXPECTED_ABOVE = 10  # clean calibration scores expected above a threshold for its rate to be estimable


def calibration_size_needed(fpr: float) -> int:
    """Clean calibration images a threshold at `fpr` needs: enough that about MIN_EXPECTED_ABOVE of them lie
    above it (with fewer, the (1 - fpr) quantile is set by one or two images and misses its rate on new data)."""
    return int(np.ceil(MIN_EXPECTED_ABOVE / fpr)) if fpr > 0 else 0


def proportion_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval of a proportion k / n: never narrower than the data allow."""
    from scipy.stats import beta

    if n == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def detection_metrics(clean_scores: np.ndarray, adv_scores: np.ndarray,
                      fprs: Sequence[float] = (0.01, 0.05, 0.10),
                      calibration_scores: np.ndarray | None = None) -> dict:
    """AUC and, for each target FPR, the threshold, the detection rate on adversarials and the FPR
    actually reached on the clean test scores with its 95 % interval. Thresholds come from
    `calibration_scores` (clean data disjoint from the test images) when given, else from `clean_scores`
    itself (then the reached rate is not an out-of-sample figure: "calibrated_on_test" says so)."""
    clean = np.asarray(clean_scores, dtype=np.float64)
    adv = np.asarray(adv_scores, dtype=np.float64)
    if clean.size == 0 or adv.size == 0:
        raise InputError(f"need clean and adversarial scores, got {clean.size} and {adv.size}.")
    calib = clean if calibration_scores is None else np.asarray(calibration_scores, dtype=np.float64)
    labels = np.r_[np.zeros(len(clean)), np.ones(len(adv))]
    scores = np.r_[clean, adv]
    out = {"n_clean": int(clean.size), "n_adv": int(adv.size), "n_calibration": int(calib.size),
           "calibrated_on_test": calibration_scores is None, "auc": float(roc_auc_score(labels, scores)),
           "at_fpr": {}}
    for f in fprs:
        thr = threshold_at_fpr(calib, f)
        k, needed = int((clean > thr).sum()), calibration_size_needed(f)
        out["at_fpr"][f"{f:g}"] = {"threshold": thr, "tpr": float((adv > thr).mean()), "fpr": k / clean.size,
                                   "fpr_ci": list(proportion_interval(k, clean.size)), "calibration_needed": needed,
                                   "calibration_enough": bool(calib.size >= needed)}
    return out


def detector_row(detector: str, attack: str, m: dict, **extra) -> dict:
    """One `detector_summary` row (the report's detector table, the risk summary's evidence) from
    `detection_metrics` output: detection at 1/5/10 % target FPR and the FPR reached on test at 5 %."""
    at = m["at_fpr"]
    five = at["0.05"]
    return {"detector": detector, "attack": attack, "auc": m["auc"], "tpr_at_1": at["0.01"]["tpr"],
            "tpr_at_5": five["tpr"], "tpr_at_10": at["0.1"]["tpr"], "target_fpr": 0.05,
            "fpr_reached": five["fpr"], "fpr_reached_ci": five["fpr_ci"], "fpr_at_5": five["fpr"],
            "n_calibration": m.get("n_calibration"), "calibration_enough": five.get("calibration_enough"),
            "n_clean": m["n_clean"], "n_adv": m["n_adv"], **extra}


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
