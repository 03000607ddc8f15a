"""BPDA (Athalye, Carlini & Wagner, ICML 2018): differentiate through a defense's purifying parts as if
they were the identity.

An autoencoder or a quantiser placed before the part that classifies can hide the gradient an attack
follows (a quantiser's is zero almost everywhere; an autoencoder's can be small or misleading) without
making the model any harder to fool. BPDA keeps the forward pass exact and replaces, on the backward pass
only, each such part g by the identity: dg(x)/dx := I. It applies to parts whose output has their input's
shape, such as the initial (image) and middle (feature) autoencoders.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from advkeras.errors import InputError
from advkeras.models.parts import top_chain

KNOWN_PARTS = ("cnn", "dnn")  # the classifier itself: never bypassed


@tf.custom_gradient
def straight_through(x: tf.Tensor, value: tf.Tensor):
    """`value` forward (bit for bit), the incoming gradient passed to `x` unchanged backward: BPDA for any
    value computed from `x` with the same shape, e.g. by a non-differentiable numpy function."""
    def grad(dy):
        return dy, tf.zeros_like(value)
    return tf.identity(value), grad


class StraightThrough(tf.keras.layers.Layer):
    """Runs `inner` forward; on the backward pass acts as the identity (BPDA)."""

    def __init__(self, inner: tf.keras.layers.Layer, **kwargs):
        super().__init__(name=f"bpda_{inner.name}", **kwargs)
        self.inner = inner

    @tf.autograph.experimental.do_not_convert  # no Python control flow to convert
    def call(self, x, training=None):
        return straight_through(x, tf.stop_gradient(self.inner(x, training=False)))


def purifier_parts(model: tf.keras.Model) -> list[str]:
    """Top-level layers of `model` other than its cnn and dnn whose output has their input's shape: the
    parts a defense puts in front of (or inside) the classifier to clean its input, which BPDA bypasses."""
    return [layer.name for layer in top_chain(model) if layer.name not in KNOWN_PARTS
            and tuple(layer.input_shape) == tuple(layer.output_shape)]


def bpda_model(model: tf.keras.Model, parts: Sequence[str] | None = None) -> tf.keras.Model:
    """`model` with `parts` (default: `purifier_parts`) wrapped in `StraightThrough`: the same answers, the
    gradient of the classifier behind them. Attack this view and judge success on `model` itself."""
    chain = top_chain(model)
    names = [layer.name for layer in chain]
    parts = purifier_parts(model) if parts is None else list(parts)
    if not parts:
        raise InputError(f"model {model.name!r} has no part to bypass: BPDA replaces parts whose output has their "
                         f"input's shape (autoencoders, quantisers) and its top-level layers are {', '.join(names)}. "
                         "Name the parts with parts=[...], or attack the model directly.")
    unknown = [p for p in parts if p not in names]
    if unknown:
        raise InputError(f"model {model.name!r} has no top-level layer {', '.join(map(repr, unknown))}; its layers "
                         f"are {', '.join(names)}.")
    for layer in chain:
        if layer.name in parts and tuple(layer.input_shape) != tuple(layer.output_shape):
            raise InputError(f"layer {layer.name!r} maps {layer.input_shape} to {layer.output_shape}; BPDA's "
                             "identity needs the same shape in and out.")
    inp = tf.keras.Input(model.input_shape[1:], name="image")
    x = inp
    for layer in chain:
        x = StraightThrough(layer)(x) if layer.name in parts else layer(x)
    return tf.keras.Model(inp, x, name=f"{model.name}_bpda")
