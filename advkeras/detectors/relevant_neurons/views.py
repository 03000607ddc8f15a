"""Figures: KDE of distances to class centroids (all / relevant / random neurons; the paper's
Fig. 2-3) and GradCAM of relevant neurons on clean vs adversarial images (Fig. 6-7)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.stats import gaussian_kde

from advkeras.errors import InputError
from advkeras.plotting import subplots


def centroid_distances(D_ref: np.ndarray, labels_ref: np.ndarray, D: np.ndarray, labels: np.ndarray,
                       mask: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distance of each row of `D` to the centroid of its class (centroids from the clean
    reference set), over the neurons in `mask` (C x m, per class) or all neurons."""
    n_classes = int(max(labels_ref.max(), labels.max())) + 1
    cents = np.stack([D_ref[labels_ref == c].mean(0) if np.any(labels_ref == c) else np.full(D.shape[1], np.nan)
                      for c in range(n_classes)])
    diff = D - cents[labels]
    if mask is not None:
        diff = diff * mask[labels]
    return np.sqrt(np.nansum(diff ** 2, axis=1))


def random_mask(mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """As many random neurons per class as `mask` selects (the paper's control)."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(mask)
    for c, row in enumerate(mask):
        out[c, rng.choice(mask.shape[1], int(row.sum()), replace=False)] = True
    return out


def _kde(ax, values: np.ndarray, label: str, color: str) -> None:
    values = values[np.isfinite(values)]
    if len(values) < 2 or np.ptp(values) == 0:
        ax.axvline(values.mean() if len(values) else 0, color=color, label=label)
        return
    grid = np.linspace(values.min(), values.max(), 200)
    ax.plot(grid, gaussian_kde(values)(grid), color=color, label=label)
    ax.fill_between(grid, gaussian_kde(values)(grid), color=color, alpha=0.2)


def plot_centroid_kde(D_ref: np.ndarray, labels_ref: np.ndarray, D_clean: np.ndarray, labels_clean: np.ndarray,
                      D_adv: np.ndarray, labels_adv: np.ndarray, relevant: np.ndarray, path: str | Path, *,
                      seed: int = 0, title: str = "") -> dict:
    """Three KDE panels (all, relevant, random neurons) of clean vs adversarial distances to the class
    centroid of the predicted class. Returns the mean distances shown."""
    if D_clean.shape[1] != relevant.shape[1]:
        raise InputError(f"descriptors have {D_clean.shape[1]} neurons, the mask {relevant.shape[1]}.")
    panels = {"all neurons": None, "relevant neurons": relevant, "random neurons": random_mask(relevant, seed)}
    fig, axes = subplots(1, 3, figsize=(12, 3.2))
    summary = {}
    for ax, (name, mask) in zip(axes, panels.items()):
        dc = centroid_distances(D_ref, labels_ref, D_clean, labels_clean, mask)
        da = centroid_distances(D_ref, labels_ref, D_adv, labels_adv, mask)
        _kde(ax, dc, "clean", "tab:blue")
        _kde(ax, da, "adversarial", "tab:red")
        ax.set_title(name)
        ax.set_xlabel("distance to class centroid")
        summary[name] = {"clean_mean": float(dc.mean()), "adv_mean": float(da.mean())}
    axes[0].set_ylabel("density")
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return summary


def plot_gradcam_pairs(x_clean: np.ndarray, x_adv: np.ndarray, cams: dict[str, tuple[np.ndarray, np.ndarray]],
                       path: str | Path, *, captions: Sequence[str] | None = None) -> Path:
    """Rows: images; columns: clean image, then for each neuron (set) its CAM on clean and on
    adversarial images. `cams` maps a column title to (clean maps, adversarial maps)."""
    n = len(x_clean)
    cols = 2 + 2 * len(cams)
    fig, axes = subplots(n, cols, figsize=(1.8 * cols, 1.9 * n), squeeze=False)
    grey = x_clean.shape[-1] == 1
    for i in range(n):
        show = [(x_clean[i], "clean"), (x_adv[i], "adversarial")]
        for title, (cc, ca) in cams.items():
            show += [(cc[i], f"{title}\nclean"), (ca[i], f"{title}\nadv")]
        for j, (img, title) in enumerate(show):
            ax = axes[i, j]
            if j < 2:
                ax.imshow(img[..., 0] if grey else img, cmap="gray" if grey else None, vmin=0, vmax=1)
            else:
                ax.imshow((x_clean if j % 2 == 0 else x_adv)[i][..., 0] if grey else
                          (x_clean if j % 2 == 0 else x_adv)[i], cmap="gray" if grey else None)
                ax.imshow(img, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if i == 0:
                ax.set_title(title, fontsize=7)
            ax.axis("off")
        if captions is not None:
            axes[i, 0].text(0, -2, captions[i], fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_relevant_gradcam(model, descriptors, sets, result, path: str | Path, *, n: int = 4) -> Path | None:
    """GradCAM of the strongest clean-relevant neuron of each image's clean class and of its whole set, on
    the clean image and on its successful adversarial (the paper's Fig. 6/7). `descriptors` is the fitted
    `NeuronDescriptors`, `sets` the fitted `RelevantNeuronSets`, `result` an `AttackResult`. None when the
    attack has no successful adversarial of a correctly classified image."""
    from advkeras.explain.gradcam import gradcam_neurons

    ok = np.flatnonzero((result.pred_clean == result.y) & result.success)[:n]
    if not len(ok):
        return None
    xc, xa, cls = result.x[ok], result.clipped[ok], result.pred_clean[ok]
    names = descriptors.neuron_names_
    single_c, single_a, set_c, set_a, captions = [], [], [], [], []
    for i in range(len(ok)):
        top = names[int(np.argmax(np.abs(sets.W_clean_[:, cls[i]])))]
        members = names[sets.mask("clean")[cls[i]]].tolist() or [top]
        single_c.append(gradcam_neurons(model, xc[i:i + 1], top)[0])
        single_a.append(gradcam_neurons(model, xa[i:i + 1], top)[0])
        set_c.append(gradcam_neurons(model, xc[i:i + 1], members)[0])
        set_a.append(gradcam_neurons(model, xa[i:i + 1], members)[0])
        captions.append(f"class {cls[i]} -> {result.pred_adv[ok[i]]}; top {top}")
    return plot_gradcam_pairs(xc, xa, {"top neuron": (np.stack(single_c), np.stack(single_a)),
                                       "relevant set": (np.stack(set_c), np.stack(set_a))}, path, captions=captions)
