"""Numbers beside the activation graphs: participation, top-k overlap and activation shift per layer."""
from __future__ import annotations

import numpy as np

from advkeras.explain.dense_activations import DenseActivations


def active_share(values: np.ndarray) -> float:
    """Mean over images of the share of the layer's neurons with a positive activation."""
    return float((values > 0).mean())


def top_k(values: np.ndarray, k: int) -> set[int]:
    """The k neurons with the highest mean activation."""
    return set(np.argsort(-values.mean(0))[:k].tolist())


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def compare_layers(a: DenseActivations, b: DenseActivations, *, k: int = 10) -> list[dict]:
    """Per layer of two conditions (clean vs adversarial, or original vs defended on the same images):
    active share in each, Jaccard overlap of the top-k most active neurons, and the mean absolute shift
    of the per-neuron mean activation, relative to the mean |activation| of `a` (so layers of
    different scales compare). Layers of different widths (the encoder defense's input) get None."""
    rows = []
    for name, va, vb in zip(a.layers, a.values, b.values):
        same = va.shape[1] == vb.shape[1]
        kk = min(k, va.shape[1])
        shift = None
        if same:
            scale = np.abs(va).mean() or 1.0
            shift = float(np.abs(va.mean(0) - vb.mean(0)).mean() / scale)
        rows.append({"layer": name, "units_a": int(va.shape[1]), "units_b": int(vb.shape[1]),
                     "active_a": active_share(va), "active_b": active_share(vb),
                     "jaccard_topk": jaccard(top_k(va, kk), top_k(vb, kk)) if same else None,
                     "mean_shift": shift})
    return rows
