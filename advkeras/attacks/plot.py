"""Pictures of adversarials: originals, adversarials and amplified differences in one grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from advkeras.attacks.result import AttackResult
from advkeras.plotting import subplots


def plot_adversarial_grid(result: AttackResult, path: str | Path, *, n: int = 8,
                          class_names: tuple[str, ...] | None = None) -> Path:
    """Save a 3-row PNG: originals (true label), adversarials (predicted label), and the perturbation
    amplified to the full range (shown, per image, as 0.5 + delta / (2 max|delta|): grey is no change,
    light and dark are the sign, which matters for sign attacks like FGSM that move every pixel). Successful
    adversarials are shown first so the picture shows what the attack achieves."""
    order = np.r_[np.flatnonzero(result.success), np.flatnonzero(~result.success)][:n]
    names = class_names or tuple(str(c) for c in range(int(max(result.y.max(), result.pred_adv.max())) + 1))
    fig, axes = subplots(3, max(len(order), 1), figsize=(1.6 * max(len(order), 1), 5.2), squeeze=False)
    for col, i in enumerate(order):
        delta = result.clipped[i] - result.x[i]
        top = np.abs(delta).max()
        amp = 0.5 + delta / (2 * top) if top > 0 else np.full_like(delta, 0.5)
        for row, (img, title) in enumerate(((result.x[i], f"true {names[result.y[i]]}"),
                                            (result.clipped[i], f"pred {names[result.pred_adv[i]]}"),
                                            (amp, f"Linf {result.linf[i] * 255:.1f}/255"))):
            ax = axes[row, col]
            ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
            ax.set_title(title, fontsize=7, color="crimson" if row == 1 and result.success[i] else "black")
            ax.axis("off")
    norm = getattr(result, "norm", "linf")
    eps = ("unbounded" if result.eps is None else f"eps={result.eps * 255:.1f}/255" if norm == "linf"
           else f"{norm.upper()} eps={result.eps:.3g}")
    fig.suptitle(f"{result.attack} ({result.backend}), {eps}: success {result.success_rate:.0%}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
