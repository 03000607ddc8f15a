"""GradCAM (tf-keras-vis) of single neurons and neuron sets, not only of class scores.

A neuron is named like the relevant-neuron descriptors: ``"cnn/block3_conv1:17"`` (channel 17 of a
conv layer) or ``"dnn/dense_1:4"`` (a dense unit). Two ways to show one neuron:

- ``variant="energy"`` (default): GradCAM of the neuron's own score (a channel's squared L2 norm, a dense
  unit's squared activation; a set's score is the sum), at the deepest conv layer up to the neuron.
- ``variant="isolated"``: the relevant-neuron paper's single-neuron GradCAM (Granda et al. 2020, Sec. 5.3):
  GradCAM of the *class* score at the neuron's conv layer with every other filter's weight set to zero,
  ReLU(alpha_k^c A^k); a set's map is the sum of its neurons' isolated maps (the paper's combined maps).

`class_gradcam` is the usual GradCAM of a class at one layer (all filters). The user's model is cloned
and flattened (tf-keras-vis cannot reach layers inside the nested cnn/dnn parts); it is never changed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
from scipy.ndimage import zoom
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.utils import normalize

from advkeras.errors import InputError, ModelError
from advkeras.models import check_images

_CONV = tf.keras.layers.Conv2D
VARIANTS = ("energy", "isolated")


def _node_in(layer: tf.keras.layers.Layer, mapping: dict[int, tf.Tensor]) -> object:
    """The call of `layer` whose inputs are already rebuilt (a functional model lists its layers in
    topological order, so the node belonging to the graph being copied is the one that is ready)."""
    for node in reversed(layer.inbound_nodes):
        if all(id(t) in mapping for t in tf.nest.flatten(node.input_tensors)):
            return node
    raise ModelError(f"layer {layer.name!r} is called on tensors outside its model; GradCAM views need "
                     "functional models built from one input.")


def _rebuild(model: tf.keras.Model, inputs: list[tf.Tensor], prefix: str, tensors: dict[str, tf.Tensor]
             ) -> list[tf.Tensor]:
    """Call fresh copies of `model`'s layers on `inputs`, descending into nested models; record every
    copied layer's output in `tensors` under ``prefix + name``. Handles branches and merges (DenseNet)."""
    if len(model.inputs) != len(inputs):
        raise ModelError(f"model {model.name!r} takes {len(model.inputs)} inputs; GradCAM views need one.")
    mapping = {id(t): v for t, v in zip(model.inputs, inputs)}
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        node = _node_in(layer, mapping)
        args = tf.nest.map_structure(lambda t: mapping[id(t)], node.input_tensors)
        if isinstance(layer, tf.keras.Model):
            out = _rebuild(layer, tf.nest.flatten(args), f"{prefix}{layer.name}/", tensors)
            out = out[0] if len(out) == 1 else out
        else:
            fresh = type(layer).from_config(layer.get_config())
            out = fresh(args)
            fresh.set_weights(layer.get_weights())
            tensors[prefix + layer.name] = out
        for t, v in zip(tf.nest.flatten(node.output_tensors), tf.nest.flatten(out)):
            mapping[id(t)] = v
    return [mapping[id(t)] for t in model.outputs]


def flat_clone(model: tf.keras.Model) -> tuple[tf.keras.Model, dict[str, tf.Tensor]]:
    """A flat copy of `model` (fresh layers rebuilt from their configs, weights copied, no nested
    models) and its layer outputs by ``part/layer`` name. Every copied layer has one node, so
    tf-keras-vis can address it by name."""
    inp = tf.keras.Input(model.input_shape[1:], name="image")
    tensors: dict[str, tf.Tensor] = {}
    out = _rebuild(model, [inp], "", tensors)
    if len(out) != 1:
        raise ModelError(f"model {model.name!r} has {len(out)} outputs; GradCAM views need one (the logits).")
    return tf.keras.Model(inp, out[0], name=f"{model.name}_flat"), tensors


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
                    penultimate_layer: str | None = None, variant: str = "energy",
                    class_index: int | np.ndarray | None = None) -> np.ndarray:
    """GradCAM maps (N x H x W, each normalised to [0, 1]) of one neuron or a neuron set.

    `variant="energy"` (default) explains the neuron's own score (the sum of the set's scores);
    `variant="isolated"` is the paper's single-neuron map: the class score's GradCAM at each neuron's conv
    layer with the other filters' weights zeroed, summed over the set. `class_index` (isolated only): one
    class for all images or one per image; default the class the model predicts for each image. An
    isolated map is all zeros where the class gradient weighs the filter negatively (GradCAM's ReLU).
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown GradCAM variant {variant!r}; choose one of: {', '.join(VARIANTS)}.")
    x = check_images(x, model, name="images")
    neurons = [neurons] if isinstance(neurons, str) else list(neurons)
    if not neurons:
        raise InputError("give at least one neuron, e.g. 'cnn/conv2:5'.")
    if variant == "isolated":
        if penultimate_layer is not None:
            raise InputError("variant='isolated' uses each neuron's own conv layer; drop penultimate_layer.")
        return _isolated(model, x, neurons, class_index)
    if class_index is not None:
        raise InputError("class_index applies to variant='isolated' (the energy variant explains the neuron itself).")
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


def class_gradcam(model: tf.keras.Model, x: np.ndarray, layer: str, *,
                  class_index: int | np.ndarray | None = None) -> np.ndarray:
    """The usual GradCAM of a class (default: the predicted one) at conv layer `layer` (``part/layer``), all
    filters weighted: ReLU(sum_k alpha_k^c A^k), upsampled and normalised like `gradcam_neurons`."""
    x = check_images(x, model, name="images")
    return _class_weighted_cams(model, x, {layer: None}, class_index, isolate=False)


def _isolated(model: tf.keras.Model, x: np.ndarray, neurons: list[str], class_index) -> np.ndarray:
    by_layer: dict[str, list[int]] = {}
    for n in neurons:
        layer, idx = parse_neuron(n)
        by_layer.setdefault(layer, []).append(idx)
    return _class_weighted_cams(model, x, by_layer, class_index, isolate=True)


def _class_indices(logits: np.ndarray, class_index) -> np.ndarray:
    n, n_classes = logits.shape
    if class_index is None:
        return logits.argmax(1)
    cls = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (n,)) if np.ndim(class_index) == 0 \
        else np.asarray(class_index, dtype=np.int64)
    if cls.shape != (n,) or cls.min() < 0 or cls.max() >= n_classes:
        raise InputError(f"class_index must be one class id in [0, {n_classes - 1}] or one per image ({n}).")
    return cls


def _class_weighted_cams(model: tf.keras.Model, x: np.ndarray, by_layer: dict[str, list[int] | None],
                         class_index, *, isolate: bool) -> np.ndarray:
    """GradCAM weights alpha^c (spatial mean of d logit_c / d A) at each layer of `by_layer`. isolate: one
    ReLU(alpha_k A^k) per listed filter, summed; else ReLU(sum over all filters). Zoom and normalisation as
    tf-keras-vis does them, so the variants differ only in which filters are weighted."""
    flat, tensors = flat_clone(model)
    for layer, idx in by_layer.items():
        if layer not in tensors:
            raise InputError(f"no layer {layer!r} in the model; known: {', '.join(tensors)}.")
        if len(tensors[layer].shape) != 4:
            raise InputError(f"layer {layer!r} is not convolutional; the paper's isolated GradCAM zeroes the other "
                             "filters of a conv layer (use variant='energy' for dense units).")
        if idx is not None and max(idx) >= tensors[layer].shape[-1]:
            raise InputError(f"layer {layer!r} has {tensors[layer].shape[-1]} neurons; got index {max(idx)}.")
    layers = list(by_layer)
    probe = tf.keras.Model(flat.input, [tensors[n] for n in layers] + [flat.output])
    xt = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        *acts, logits = probe(xt, training=False)
        cls = _class_indices(logits.numpy(), class_index)
        score = tf.reduce_sum(tf.gather(logits, cls, axis=1, batch_dims=1))
    grads = tape.gradient(score, acts)
    total = np.zeros(x.shape[:3], np.float64)
    for layer, a, g in zip(layers, acts, grads):
        a, alpha = a.numpy().astype(np.float64), tf.reduce_mean(g, axis=(1, 2)).numpy().astype(np.float64)
        if isolate:
            idx = sorted(set(by_layer[layer]))
            cam = np.maximum(a[..., idx] * alpha[:, None, None, idx], 0).sum(-1)
        else:
            cam = np.maximum(np.einsum("nhwk,nk->nhw", a, alpha), 0)
        total += zoom(cam, (1, x.shape[1] / cam.shape[1], x.shape[2] / cam.shape[2]), order=1)
    return np.asarray(normalize(total), dtype=np.float32)
