"""GradCAM (tf-keras-vis) of single neurons and neuron sets, not only of class scores.

A neuron is named like the relevant-neuron descriptors: ``"cnn/block3_conv1:17"`` (channel 17 of a
conv layer: its score is the channel's squared L2 norm) or ``"dnn/dense_1:4"`` (a dense unit: its
squared activation). A set's score is the sum of its neurons' scores. The user's model is cloned
and flattened (tf-keras-vis cannot reach layers inside the nested cnn/dnn parts); it is never changed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
from tf_keras_vis.gradcam import Gradcam

from advkeras.errors import InputError, ModelError
from advkeras.models import check_images

_CONV = tf.keras.layers.Conv2D


def _leaf_layers(model: tf.keras.Model, prefix: str = "") -> list[tuple[str, tf.keras.layers.Layer]]:
    out = []
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        if isinstance(layer, tf.keras.Model):
            out += _leaf_layers(layer, f"{prefix}{layer.name}/")
        else:
            if len(layer.inbound_nodes) and len(tf.nest.flatten(layer.inbound_nodes[-1].input_tensors)) != 1:
                raise ModelError(f"layer {layer.name!r} takes several inputs; GradCAM views support chains "
                                 "of single-input layers (the advkeras model zoo).")
            out.append((prefix + layer.name, layer))
    return out


def flat_clone(model: tf.keras.Model) -> tuple[tf.keras.Model, dict[str, tf.Tensor]]:
    """A flat copy of `model` (fresh layers rebuilt from their configs, weights copied, no nested
    models) and its layer outputs by ``part/layer`` name. Every copied layer has one node, so
    tf-keras-vis can address it by name."""
    inp = tf.keras.Input(model.input_shape[1:], name="image")
    x, tensors = inp, {}
    for full, layer in _leaf_layers(model):
        fresh = type(layer).from_config(layer.get_config())
        x = fresh(x)
        fresh.set_weights(layer.get_weights())
        tensors[full] = x
    return tf.keras.Model(inp, x, name=f"{model.name}_flat"), tensors


def parse_neuron(name: str) -> tuple[str, int]:
    """``"cnn/conv2:5"`` -> ("cnn/conv2", 5)."""
    layer, _, idx = str(name).rpartition(":")
    if not layer or not idx.isdigit():
        raise InputError(f"neuron {name!r} must look like 'part/layer:index', e.g. 'cnn/conv2:5'.")
    return layer, int(idx)


def _score_model(flat: tf.keras.Model, tensors: dict[str, tf.Tensor], neurons: Sequence[str]
                 ) -> tuple[tf.keras.Model, str]:
    by_layer: dict[str, list[int]] = {}
    for n in neurons:
        layer, idx = parse_neuron(n)
        if layer not in tensors:
            raise InputError(f"no layer {layer!r} in the model; known: {', '.join(tensors)}.")
        by_layer.setdefault(layer, []).append(idx)
    order = list(tensors)
    terms = []
    for layer, idx in by_layer.items():
        out = tensors[layer]
        if max(idx) >= out.shape[-1]:
            raise InputError(f"layer {layer!r} has {out.shape[-1]} neurons; got index {max(idx)}.")
        sel = tf.gather(out, idx, axis=-1)
        terms.append(tf.reduce_sum(tf.square(sel), axis=list(range(1, len(sel.shape)))))
    score = tf.add_n(terms) if len(terms) > 1 else terms[0]
    # The CAM layer: the deepest conv layer that still lies before every selected neuron (or is the
    # earliest selected conv layer itself); later layers would not influence early neurons.
    first = min(order.index(layer) for layer in by_layer)
    convs = [n for n in order[:first + 1] if len(tensors[n].shape) == 4 and "conv" in n.rsplit("/", 1)[-1]]
    if not convs:
        raise ModelError("no convolutional layer before the selected neurons; GradCAM needs one.")
    return tf.keras.Model(flat.input, score[:, None]), convs[-1]


def gradcam_neurons(model: tf.keras.Model, x: np.ndarray, neurons: Sequence[str] | str, *,
                    penultimate_layer: str | None = None) -> np.ndarray:
    """GradCAM maps (N x H x W, each normalised to [0, 1]) of one neuron or the sum of a neuron set."""
    x = check_images(x, model, name="images")
    neurons = [neurons] if isinstance(neurons, str) else list(neurons)
    if not neurons:
        raise InputError("give at least one neuron, e.g. 'cnn/conv2:5'.")
    flat, tensors = flat_clone(model)
    score_model, cam_layer = _score_model(flat, tensors, neurons)
    if penultimate_layer is not None:
        if penultimate_layer not in tensors:
            raise InputError(f"no layer {penultimate_layer!r}; known: {', '.join(tensors)}.")
        cam_layer = penultimate_layer
    name = tensors[cam_layer].node.layer.name
    cams = Gradcam(score_model, clone=False)(lambda out: out[:, 0], x, penultimate_layer=name,
                                             seek_penultimate_conv_layer=False)
    return np.asarray(cams, dtype=np.float32).reshape(len(x), *x.shape[1:3])
