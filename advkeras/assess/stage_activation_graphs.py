"""Assessment stage: activation graphs of the dense part, original vs each defense, clean vs adversarial."""
from __future__ import annotations

import logging

import tensorflow as tf

from advkeras.assess.config import section
from advkeras.assess.context import RunContext
from advkeras.evaluation.activation_graphs import compare_defense_activations, summary_by_model

log = logging.getLogger(__name__)


def _similarity_classifier(model: tf.keras.Model) -> tf.keras.Model:
    """The classifier as the prediction-similarity defense runs it: the layer sits after the classifier
    and shares its weights, so this is the original model itself (its graph must come out unchanged)."""
    from advkeras.defenses.prediction_similarity import build_defended_model

    defended = build_defended_model(model)
    return next(layer for layer in defended.layers if isinstance(layer, tf.keras.Model))


def stage_activation_graphs(ctx: RunContext) -> None:
    cfg = section(ctx.config, "activation_graphs")
    if not cfg["enabled"]:
        return
    ev = ctx.eval_set(int(cfg["n_images"]))
    defended = dict(ctx.defended)
    if cfg["prediction_similarity"]:
        defended["prediction-similarity"] = _similarity_classifier(ctx.model)
    folder = ctx.out / "figures" / "activation_graphs"
    rows, figures = compare_defense_activations(ctx.model, defended, ev.x, ev.y, folder, attacks=cfg["attacks"],
                                                eps=cfg["eps"], top_k=cfg["top_k"], seed=ctx.seed)
    ctx.add_figure("activation_graphs", "original", figures.pop("original"),
                   f"Dense part of the original model on clean and adversarial images (eps {cfg['eps'] * 255:.0f}/255)")
    for name, path in figures.items():
        ctx.add_figure("activation_graphs", name, path, f"Original (top) vs {name} (bottom): clean, "
                       f"{cfg['attacks'][-1].upper()} and the change per neuron (blue down, red up)")
    ctx.metrics["activation_graphs"] = {"settings": cfg, "n_images": len(ev), "rows": rows,
                                        "table_attack": cfg["attacks"][-1],
                                        "table": summary_by_model(rows, cfg["attacks"][-1])}
