"""Activations of a classifier's dense part (`dnn`): its input, every Dense layer, the logits."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from advkeras.models.checks import check_images
from advkeras.models.parts import get_part


@dataclass
class DenseActivations:
    """Per layer of the dense part: its name and an (images x units) activation matrix, plus the Dense
    kernels between consecutive layers (kernels[i] maps layer i to layer i + 1)."""

    layers: list[str]
    values: list[np.ndarray]
    kernels: list[np.ndarray]

    def means(self) -> list[np.ndarray]:
        return [v.mean(0) for v in self.values]


def _dense_layers(dnn: tf.keras.Model) -> list[tf.keras.layers.Dense]:
    return [layer for layer in dnn.layers if isinstance(layer, tf.keras.layers.Dense)]


def dense_activation_model(model: tf.keras.Model) -> tuple[tf.keras.Model, list[str]]:
    """image -> [dnn input, dense_1, ..., logits]. Works for any model whose top level is a chain ending in
    the `dnn` part (original and defended models alike: the dnn input is whatever feeds it)."""
    dnn = get_part(model, "dnn")
    dense = _dense_layers(dnn)
    inner = tf.keras.Model(dnn.input, [dnn.input] + [d.output for d in dense], name="dnn_activations")
    inp = tf.keras.Input(model.input_shape[1:])
    x = inp
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        if layer is dnn:
            return tf.keras.Model(inp, inner(x)), ["input"] + [d.name for d in dense]
        x = layer(x)
    raise AssertionError("unreachable: get_part found the dnn")  # pragma: no cover


def dense_activations(model: tf.keras.Model, x: np.ndarray, batch_size: int = 256) -> DenseActivations:
    """Activations of the dense part on images `x` (float32 [0, 1])."""
    x = check_images(x, model)
    act_model, names = dense_activation_model(model)
    chunks = [act_model(x[i:i + batch_size], training=False) for i in range(0, len(x), batch_size)]
    values = [np.concatenate([c[j].numpy() for c in chunks]) for j in range(len(names))]
    kernels = [d.kernel.numpy() for d in _dense_layers(get_part(model, "dnn"))]
    return DenseActivations(names, values, kernels)
