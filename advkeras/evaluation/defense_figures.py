"""Figures of the defense evaluation: Table 1 as bars, and new adversarials per defense (the paper's Fig. 10)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from advkeras.attacks import AttackResult
from advkeras.plotting import subplots


def plot_recovery(table: dict, path: str | Path) -> Path:
    """Grouped bars: share of initial adversarials recovered, per defense and attack (mean +- std over seeds)."""
    rec = table["summary"]["recovered"]
    defenses, attacks = list(rec), [a for a in next(iter(rec.values())) if a != "all"] + ["all"]
    width = 0.8 / len(attacks)
    fig, ax = subplots(figsize=(1.8 + 1.6 * len(defenses), 3.6))
    for i, a in enumerate(attacks):
        means = [100 * rec[d][a]["mean"] for d in defenses]
        stds = [100 * rec[d][a]["std"] for d in defenses]
        ax.bar(np.arange(len(defenses)) + (i - (len(attacks) - 1) / 2) * width, means, width, yerr=stds,
               capsize=2, label=a)
    ax.set_xticks(np.arange(len(defenses)), defenses)
    ax.set_ylabel("initial adversarials recovered (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"eps = {table['eps'] * 255:.3g}/255, seeds {table['seeds']}")
    ax.legend(fontsize=8, ncol=len(attacks))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_new_adversarials(fixed: Mapping[str, AttackResult], path: str | Path, *, n_samples: int = 3,
                          class_names: tuple[str, ...] = ()) -> Path:
    """Per sample: the clean image, then each model's new adversarial (row 1) and its perturbation
    magnified to the full grey range (row 2), with the predicted class; models side by side."""
    names = list(fixed)
    first = fixed[names[0]]
    ok = np.all([r.pred_clean == r.y for r in fixed.values()], axis=0)
    picks = np.flatnonzero(ok)[:n_samples] if ok.any() else np.arange(min(n_samples, len(first.y)))
    cols = len(names) + 1
    fig, axes = subplots(2 * len(picks), cols, figsize=(1.7 * cols, 3.5 * len(picks)), squeeze=False)

    def label(c: int) -> str:
        return class_names[c] if c < len(class_names) else str(c)

    for r, i in enumerate(picks):
        top, bottom = axes[2 * r], axes[2 * r + 1]
        top[0].imshow(np.squeeze(first.x[i]), cmap="gray", vmin=0, vmax=1)
        top[0].set_title(f"clean, y={label(first.y[i])}", fontsize=8)
        bottom[0].axis("off")
        for c, name in enumerate(names, start=1):
            res = fixed[name]
            top[c].imshow(np.squeeze(res.clipped[i]), cmap="gray", vmin=0, vmax=1)
            mark = "wrong when clean" if res.pred_clean[i] != res.y[i] else "fooled" if res.success[i] else "resists"
            top[c].set_title(f"{name}\npred {label(res.pred_adv[i])} ({mark})", fontsize=7)
            delta = res.clipped[i] - res.x[i]
            span = np.abs(delta).max() or 1.0
            bottom[c].imshow(np.squeeze(0.5 + 0.5 * delta / span), cmap="gray", vmin=0, vmax=1)
            bottom[c].set_title(f"perturbation x{0.5 / span:.0f}", fontsize=7)
        for ax in (*top, *bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    eps = first.eps
    fig.suptitle(f"new {first.attack.upper()} adversarials per model" + (f", eps {eps * 255:.3g}/255" if eps else ""),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_new_adversarial_rates(rows: Mapping[str, dict], path: str | Path) -> Path:
    """Success rate at the fixed eps and median minimal Linf (in /255) of new adversarials, per model."""
    names = list(rows)
    fig, (a1, a2) = subplots(1, 2, figsize=(2 + 1.5 * len(names), 3.2))
    a1.bar(names, [100 * rows[n]["success_rate_on_correct"] for n in names], color="tab:red")
    a1.set_ylabel("success on correctly classified (%)")
    a1.set_ylim(0, 105)
    med = [rows[n]["median_min_linf"] * 255 for n in names]
    a2.bar(names, [m if np.isfinite(m) else 0 for m in med], color="tab:blue")
    a2.set_ylabel("median minimal Linf (x/255)")
    for ax in (a1, a2):
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)
