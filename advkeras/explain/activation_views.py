"""Activation-graph figures: clean vs adversarial, models side by side, differences, a grid per defense."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from advkeras.explain.activation_graph import build_graph, draw_graph, layer_scales, select_nodes
from advkeras.explain.dense_activations import DenseActivations
from advkeras.plotting import subplots


def _figure(n_rows: int, n_cols: int):

    fig, axes = subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.6 * n_rows), squeeze=False)
    return fig, axes


def _legend(fig, diverging: bool) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cmap = "coolwarm" if diverging else "viridis"
    sm = ScalarMappable(norm=Normalize(-1 if diverging else 0, 1), cmap=cmap)
    bar = fig.colorbar(sm, ax=fig.axes, shrink=0.6, pad=0.01)
    bar.set_label("activation change / layer max |change|" if diverging else "mean activation / layer max",
                  fontsize=8)
    fig.text(0.01, 0.01, "edges: mean contribution a_i*W_ij (red +, blue -, width = |.|); squares: all other "
             "units of a wide layer", fontsize=7)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_conditions(conditions: Mapping[str, DenseActivations], path: str | Path, *, max_nodes: int = 24,
                    edges_per_layer: int = 40) -> Path:
    """One panel per condition (e.g. {"clean": ..., "FGSM": ...} or {"original": ..., "middle AE": ...}),
    same neurons and colour scale in every panel."""
    items = list(conditions.items())
    spec = select_nodes([c for _, c in items], max_nodes)
    scale = layer_scales([c for _, c in items])
    fig, axes = _figure(1, len(items))
    for ax, (title, acts) in zip(axes[0], items):
        draw_graph(build_graph(acts, spec, edges_per_layer=edges_per_layer), ax, title=title, scale=scale)
    _legend(fig, False)
    return _save(fig, path)


def difference_values(a: DenseActivations, b: DenseActivations) -> list[np.ndarray]:
    """Per layer: mean activation of b minus a (None-safe only for equal widths)."""
    return [vb.mean(0) - va.mean(0) for va, vb in zip(a.values, b.values)]


def plot_difference(a: DenseActivations, b: DenseActivations, path: str | Path, *, title: str,
                    max_nodes: int = 24, edges_per_layer: int = 40) -> Path:
    """Node colour = change of mean activation from `a` to `b` (diverging); edges are `b`'s."""
    diff = difference_values(a, b)
    spec = select_nodes([a, b], max_nodes)
    fig, axes = _figure(1, 1)
    g = build_graph(b, spec, edges_per_layer=edges_per_layer, node_values=diff)
    draw_graph(g, axes[0, 0], title=title, scale=layer_scales([], values=[diff]), diverging=True)
    _legend(fig, True)
    return _save(fig, path)


def plot_defense_grid(original: tuple[DenseActivations, DenseActivations],
                      defended: tuple[DenseActivations, DenseActivations], path: str | Path, *, defense: str,
                      attack: str, max_nodes: int = 24, edges_per_layer: int = 30) -> Path:
    """2 x 3 grid: rows original / defended; columns clean, adversarial, change (adversarial - clean).
    Colour scales are shared within each row's clean/adversarial panels, and the change column shares
    one scale across both rows, so a defense that moves its activations less shows paler nodes."""
    rows = [("original", original), (defense, defended)]
    diffs = [difference_values(clean, adv) for _, (clean, adv) in rows]
    shared = layer_scales([], values=diffs)  # per layer; widths may differ (the encoder's input)
    fig, axes = _figure(2, 3)
    for r, ((name, (clean, adv)), diff) in enumerate(zip(rows, diffs)):
        spec = select_nodes([clean, adv], max_nodes)
        scale = layer_scales([clean, adv])
        draw_graph(build_graph(clean, spec, edges_per_layer=edges_per_layer), axes[r, 0],
                   title=f"{name}: clean", scale=scale)
        draw_graph(build_graph(adv, spec, edges_per_layer=edges_per_layer), axes[r, 1],
                   title=f"{name}: {attack}", scale=scale)
        draw_graph(build_graph(adv, spec, edges_per_layer=edges_per_layer, node_values=diff), axes[r, 2],
                   title=f"{name}: change", scale=shared, diverging=True)
    _legend(fig, False)
    return _save(fig, path)
