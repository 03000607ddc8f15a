"""Figures of the feature-response detector: original vs adversarial, their responses and entropy maps."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from advkeras.detectors.feature_response import FeatureResponseDetector
from advkeras.plotting import subplots


def plot_feature_responses(detector: FeatureResponseDetector, x: np.ndarray, x_adv: np.ndarray, path: str | Path,
                           *, title: str = "", n: int = 3) -> Path:
    """Save a PNG with one row per image pair: original, adversarial, the feature response of each
    (|guided backprop| summed over channels) and the local-entropy map of each, with the average
    local entropy (the detector's score) in the titles. Entropy maps share one colour scale
    (yellow: high entropy, a scattered response)."""

    x, x_adv = x[:n], x_adv[:n]
    resp, ent = detector.maps(np.concatenate([x, x_adv]))
    k = len(x)
    # One entropy scale for all maps (min to max over them), so originals and adversarials compare.
    vmin_ent, vmax_ent = (float(ent.min()), float(ent.max())) if ent.size else (0.0, 1.0)
    cols = ("original", "adversarial", "response (orig.)", "response (adv.)", "local entropy (orig.)",
            "local entropy (adv.)")
    fig, axes = subplots(max(k, 1), 6, figsize=(10.5, 1.9 * max(k, 1) + 0.5), squeeze=False)
    for i in range(k):
        panels = [(x[i], None), (x_adv[i], None), (resp[i], "magma"), (resp[k + i], "magma"),
                  (ent[i], "viridis"), (ent[k + i], "viridis")]
        for j, (img, cmap) in enumerate(panels):
            ax = axes[i, j]
            if cmap is None:
                ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
            elif j < 4:
                ax.imshow(img, cmap=cmap, vmin=0, vmax=float(np.percentile(resp[[i, k + i]], 99.5)) or 1.0)
            else:
                ax.imshow(img, cmap=cmap, vmin=vmin_ent, vmax=vmax_ent)
            label = cols[j] if i == 0 else ""
            if j >= 4:
                label += f"\nmean {img.mean():.3f} bits"
            ax.set_title(label, fontsize=7)
            ax.axis("off")
    fig.suptitle(title or "feature responses and local spatial entropy", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
