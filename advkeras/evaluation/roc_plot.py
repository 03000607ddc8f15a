"""ROC curves of detectors, one line per (detector, attack), with the 1 % and 5 % FPR marks."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from advkeras.evaluation.detection import roc_points
from advkeras.plotting import subplots


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *, title: str = "") -> Path:
    """`curves` maps a label to (clean scores, adversarial scores); higher scores = more adversarial."""
    from sklearn.metrics import auc

    fig, ax = subplots(figsize=(4.6, 4.2))
    for label, (clean, adv) in curves.items():
        fpr, tpr = roc_points(np.asarray(clean), np.asarray(adv))
        ax.plot(fpr, tpr, lw=1.4, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
    for mark in (0.01, 0.05):
        ax.axvline(mark, color="#999", lw=0.7, ls="--")
    ax.plot([0, 1], [0, 1], color="#ccc", lw=0.8)
    ax.set_xlabel("false-positive rate (clean images flagged)")
    ax.set_ylabel("detection rate (adversarials flagged)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
