"""How each defense changes the dense part: activation-graph figures and per-layer numbers, original vs
defended, clean vs adversarial (the visualisation paper's comparison, with numbers beside the pictures)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.attacks import generate
from advkeras.explain.activation_stats import compare_layers
from advkeras.explain.activation_views import plot_conditions, plot_defense_grid
from advkeras.explain.dense_activations import DenseActivations, dense_activations


def _short(name: str) -> str:
    return name.upper() if len(name) <= 4 else name


def compare_defense_activations(original: tf.keras.Model, defended: Mapping[str, tf.keras.Model], x: np.ndarray,
                                y: np.ndarray, out: str | Path, *, attacks: Sequence[str] = ("fgsm", "bim", "pgd"),
                                eps: float = 4 / 255, grid_attack: str | None = None, top_k: int = 10,
                                seed: int = 0, progress: bool = True) -> tuple[list[dict], dict[str, Path]]:
    """Adversarials are made on the original model (the known adversarials a defense must absorb),
    then every model's dense part is read on the clean and adversarial images.

    Returns table rows (one per model x attack x layer: participation, top-k Jaccard and relative
    shift, clean vs adversarial and original vs defended) and the figure paths written under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    advs = {a: generate(original, x, y, a, eps=eps, backend="native", seed=seed, progress=False).clipped
            for a in attacks}
    models = {"original": original, **defended}
    acts: dict[str, dict[str, DenseActivations]] = {}
    for name, model in tqdm(models.items(), desc="activation graphs", disable=not progress, leave=False):
        acts[name] = {"clean": dense_activations(model, x), **{a: dense_activations(model, v) for a, v in advs.items()}}
    figures = {"original": plot_conditions({("clean" if c == "clean" else f"{_short(c)} {eps * 255:.0f}/255"): v
                                            for c, v in acts["original"].items()}, out / "original_clean_vs_adv.png")}
    grid_attack = grid_attack or attacks[-1]
    rows = []
    for name in models:
        for attack in attacks:
            within = compare_layers(acts[name]["clean"], acts[name][attack], k=top_k)
            versus = compare_layers(acts["original"][attack], acts[name][attack], k=top_k)
            for w, v in zip(within, versus):
                rows.append({"model": name, "attack": attack, "layer": w["layer"], "units": w["units_a"],
                             "active_clean": w["active_a"], "active_adv": w["active_b"],
                             "jaccard_clean_adv": w["jaccard_topk"], "shift_clean_adv": w["mean_shift"],
                             "jaccard_vs_original": v["jaccard_topk"], "shift_vs_original": v["mean_shift"]})
        if name != "original":
            figures[name] = plot_defense_grid((acts["original"]["clean"], acts["original"][grid_attack]),
                                              (acts[name]["clean"], acts[name][grid_attack]),
                                              out / f"grid_{name}.png", defense=name, attack=_short(grid_attack))
    return rows, figures


def summary_by_model(rows: list[dict], attack: str) -> list[dict]:
    """One line per model and layer for one attack: the table the report shows."""
    return [r for r in rows if r["attack"] == attack]
