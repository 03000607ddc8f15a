"""Classification metrics every model gets, defended or not: a skewed subset cannot hide a model that
answers one class almost always (accuracy can; balanced accuracy and the share of predictions cannot)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def classification_metrics(y: np.ndarray, pred: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy (mean recall over the classes present in `y`), recall per class, the
    share of labels and of predictions per class, and the confusion matrix (rows: true, columns: predicted)."""
    y, pred = np.asarray(y, dtype=int), np.asarray(pred, dtype=int)
    k = max(len(class_names), int(max(y.max(initial=-1), pred.max(initial=-1))) + 1)
    names = [class_names[c] if c < len(class_names) else str(c) for c in range(k)]
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (y, pred), 1)
    support = cm.sum(1)
    recall = [float(cm[c, c] / support[c]) if support[c] else None for c in range(k)]
    present = [r for r in recall if r is not None]
    n = int(len(y))
    return {"n": n, "accuracy": float((pred == y).mean()) if n else None,
            "balanced_accuracy": float(np.mean(present)) if present else None,
            "per_class_recall": dict(zip(names, recall)),
            "label_share": {name: float(support[c] / n) if n else None for c, name in enumerate(names)},
            "prediction_share": {name: float(cm[:, c].sum() / n) if n else None for c, name in enumerate(names)},
            "confusion_matrix": cm.tolist()}
