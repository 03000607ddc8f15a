"""Flatten a classifier of nested sub-models (``cnn`` -> ``dnn``) into one level of plain layers.

Layer-by-layer analyzers (iNNvestigate, guided backprop) see a nested model as one opaque layer, so
they need every leaf layer at the top level. The flat model calls the *same* layer objects, so it
shares the original's weights; nothing is copied and the user's model is not modified.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from advkeras.errors import ModelError

Wrap = Callable[[tf.keras.layers.Layer, tf.Tensor], tf.Tensor]


def leaf_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The leaf layers of a chain of (possibly nested) models, in call order, without input layers."""
    leaves = []
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        _check_single_input(model, layer)
        leaves += leaf_layers(layer) if isinstance(layer, tf.keras.Model) else [layer]
    return leaves


def _check_single_input(model: tf.keras.Model, layer: tf.keras.layers.Layer) -> None:
    nodes = [n for n in layer.inbound_nodes if n.layer is layer]
    inputs = tf.nest.flatten(nodes[0].input_tensors) if nodes else []
    if len(inputs) > 1:
        raise ModelError(f"layer {layer.name!r} of {model.name!r} takes {len(inputs)} inputs; feature-response "
                         "analysis supports models that are a chain of single-input layers (the advkeras zoo "
                         "and compose() build such models). Analyze a chain model, or flatten yours by hand.")


def flat_model(model: tf.keras.Model, wrap: Wrap | None = None, name: str | None = None) -> tf.keras.Model:
    """A single-level functional model with the same input, output and weights as `model`.

    `wrap(layer, output)` may replace each leaf layer's output (e.g. to change its gradient).
    """
    layers = leaf_layers(model)
    names = [layer.name for layer in layers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ModelError(f"layers {dupes} appear more than once across {model.name!r}'s sub-models; a flat "
                         "model needs unique layer names. Rename them (layer._name) before analysis.")
    inp = tf.keras.Input(model.input_shape[1:], name="image")
    x = inp
    for layer in layers:
        out = layer(x)
        x = wrap(layer, out) if wrap is not None else out
    return tf.keras.Model(inp, x, name=name or f"{model.name}_flat")


def has_relu(layer: tf.keras.layers.Layer) -> bool:
    """Whether the layer ends in a ReLU (a ReLU layer, Activation('relu') or activation='relu')."""
    if isinstance(layer, tf.keras.layers.ReLU):
        return True
    act = getattr(layer, "activation", None)
    return act is tf.keras.activations.relu or getattr(act, "__name__", "") == "relu"
