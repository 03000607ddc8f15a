"""Activation graphs of the dense part (networkx + matplotlib), and the numbers beside them.

Nodes are neurons, laid out in layers (dnn input, hidden Dense layers, logits). A layer wider than
`max_nodes` (the dnn input: hundreds or thousands of CNN features) is reduced to its `max_nodes` most
active units, chosen once over every condition drawn together so the panels show the same neurons,
plus one "other" node carrying the mean of the rest. Node colour is the mean activation over the images;
an edge i -> j carries the mean contribution a_i * W_ij, and only the `edges_per_layer` strongest
(by |contribution|) between two layers are kept; edge width grows with |contribution|, colour gives sign.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import networkx as nx
import numpy as np

from advkeras.explain.dense_activations import DenseActivations
from advkeras.plotting import colormap

OTHER = -1  # neuron index of the "other" node


@dataclass
class GraphSpec:
    """Which neurons of each layer are drawn (shared by all panels of one figure)."""

    nodes: list[np.ndarray]
    layers: list[str]


def select_nodes(conditions: Sequence[DenseActivations], max_nodes: int = 24) -> GraphSpec:
    """Per layer: every neuron, or for wide layers the `max_nodes` with the highest mean activation in
    any condition (so a neuron that lights up only on adversarials is drawn)."""
    first = conditions[0]
    nodes = []
    for i, _ in enumerate(first.layers):
        width = first.values[i].shape[1]
        if width <= max_nodes or any(c.values[i].shape[1] != width for c in conditions):
            nodes.append(np.arange(width))
            continue
        peak = np.max([c.values[i].mean(0) for c in conditions], axis=0)
        nodes.append(np.sort(np.argsort(-peak)[:max_nodes]))
    return GraphSpec(nodes, list(first.layers))


def build_graph(acts: DenseActivations, spec: GraphSpec, *, edges_per_layer: int = 40,
                node_values: list[np.ndarray] | None = None) -> nx.DiGraph:
    """The activation graph of one condition. `node_values` overrides node colours (e.g. differences)."""
    g = nx.DiGraph()
    means = node_values if node_values is not None else acts.means()
    for li, (name, keep) in enumerate(zip(spec.layers, spec.nodes)):
        width = acts.values[li].shape[1]
        for n in keep:
            g.add_node((li, int(n)), layer=li, value=float(means[li][n]), label=f"{name}[{n}]",
                       layer_name=f"{name} ({width})")
        rest = np.setdiff1d(np.arange(width), keep)
        if len(rest):
            g.add_node((li, OTHER), layer=li, value=float(means[li][rest].mean()),
                       label=f"{name}: {len(rest)} others", layer_name=f"{name} ({width})")
    for li, kernel in enumerate(acts.kernels):
        src_mean = acts.values[li].mean(0)
        contrib = src_mean[:, None] * kernel  # mean over images of a_i * W_ij (W is fixed)
        rows = _grouped(contrib, spec.nodes[li], axis=0)
        both = _grouped(rows, spec.nodes[li + 1], axis=1)
        src_ids = _ids(spec.nodes[li], contrib.shape[0])
        dst_ids = _ids(spec.nodes[li + 1], contrib.shape[1])
        order = np.argsort(-np.abs(both), axis=None)[:edges_per_layer]
        for flat in order:
            s, d = np.unravel_index(flat, both.shape)
            g.add_edge((li, src_ids[s]), (li + 1, dst_ids[d]), contribution=float(both[s, d]))
    return g


def _grouped(m: np.ndarray, keep: np.ndarray, axis: int) -> np.ndarray:
    """Keep the `keep` rows/columns and average the rest into one extra 'other' row/column (an average,
    like the 'other' node's colour, so a thousand small inputs do not drown the drawn ones)."""
    rest = np.setdiff1d(np.arange(m.shape[axis]), keep)
    kept = np.take(m, keep, axis=axis)
    if not len(rest):
        return kept
    return np.concatenate([kept, np.take(m, rest, axis=axis).mean(axis=axis, keepdims=True)], axis=axis)


def _ids(keep: np.ndarray, width: int) -> list[int]:
    return [int(n) for n in keep] + ([OTHER] if len(keep) < width else [])


def _positions(g: nx.DiGraph) -> dict:
    pos = {}
    for li in sorted({d["layer"] for _, d in g.nodes(data=True)}):
        members = sorted((n for n, d in g.nodes(data=True) if d["layer"] == li), key=lambda n: (n[1] == OTHER, n[1]))
        ys = np.linspace(1, 0, len(members)) if len(members) > 1 else [0.5]
        pos.update({n: (li, y) for n, y in zip(members, ys)})
    return pos


def draw_graph(g: nx.DiGraph, ax, *, title: str, scale: list[float], cmap: str = "viridis",
               diverging: bool = False) -> None:
    """Draw one graph on `ax`. `scale[layer]` is the colour range (shared by the panels of one figure)."""
    pos = _positions(g)
    cmap_ = colormap("coolwarm" if diverging else cmap)
    colors = []
    for n, d in g.nodes(data=True):
        s = scale[d["layer"]] or 1.0
        colors.append(cmap_(0.5 + 0.5 * d["value"] / s if diverging else np.clip(d["value"] / s, 0, 1)))
    contribs = np.array([d["contribution"] for *_, d in g.edges(data=True)]) if g.number_of_edges() else np.zeros(0)
    top = np.abs(contribs).max() if len(contribs) else 1.0
    nx.draw_networkx_edges(g, pos, ax=ax, width=0.3 + 3.0 * np.abs(contribs) / (top or 1.0),
                           edge_color=["#c0392b" if c > 0 else "#2e86c1" for c in contribs], alpha=0.55,
                           arrows=False)
    shapes = {n: ("s" if n[1] == OTHER else "o") for n in g.nodes}
    for shape in ("o", "s"):
        nodelist = [n for n in g.nodes if shapes[n] == shape]
        nx.draw_networkx_nodes(g, pos, nodelist=nodelist, ax=ax, node_shape=shape, node_size=60,
                               node_color=[colors[list(g.nodes).index(n)] for n in nodelist],
                               edgecolors="#333", linewidths=0.4)
    for n, d in g.nodes(data=True):
        if pos[n][1] == min(p[1] for m, p in pos.items() if m[0] == n[0]):
            ax.text(pos[n][0], -0.09, d["layer_name"], ha="center", va="top", fontsize=7)
    ax.set_ylim(-0.16, 1.05)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def layer_scales(conditions: Sequence[DenseActivations], diverging: bool = False,
                 values: Sequence[list[np.ndarray]] | None = None) -> list[float]:
    """Per-layer colour range shared by all panels: max |mean activation| over the conditions."""
    per = values if values is not None else [c.means() for c in conditions]
    return [float(max(np.abs(v[i]).max() for v in per)) for i in range(len(per[0]))]
