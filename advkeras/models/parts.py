"""Access to a classifier's parts: the `cnn`/`dnn` sub-models and any intermediate activation."""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from advkeras.errors import ModelError


def get_part(model: tf.keras.Model, name: str) -> tf.keras.Model:
    """The nested sub-model `name` ("cnn" or "dnn"), with an error that says how to build one."""
    try:
        part = model.get_layer(name)
    except ValueError:
        part = None
    if not isinstance(part, tf.keras.Model):
        top = ", ".join(layer.name for layer in model.layers)
        raise ModelError(f"model {model.name!r} has no {name!r} sub-model (its top-level layers are: {top}). "
                         "advkeras needs a functional model made of two nested models named 'cnn' (features) "
                         "and 'dnn' (dense head); build one with advkeras.models.build_classifier or "
                         "advkeras.models.compose(cnn, dnn).")
    return part


def get_parts(model: tf.keras.Model) -> tuple[tf.keras.Model, tf.keras.Model]:
    """(cnn, dnn) of a classifier."""
    return get_part(model, "cnn"), get_part(model, "dnn")


def compose(cnn: tf.keras.Model, dnn: tf.keras.Model, *, before: Sequence[tf.keras.layers.Layer] = (),
            between: Sequence[tf.keras.layers.Layer] = (), name: str = "classifier") -> tf.keras.Model:
    """image -> before... -> cnn -> between... -> dnn: the way defenses insert layers or models."""
    if cnn.name != "cnn" or dnn.name != "dnn":
        raise ModelError(f"the parts must be named 'cnn' and 'dnn', got {cnn.name!r} and {dnn.name!r}.")
    inp = tf.keras.Input(cnn.input_shape[1:], name="image")
    x = inp
    for layer in before:
        x = layer(x)
    x = cnn(x)
    for layer in between:
        x = layer(x)
    return tf.keras.Model(inp, dnn(x), name=name)


def top_chain(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The model's top-level layers in order (a chain of single-input layers, as `compose` builds)."""
    layers = [layer for layer in model.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
    for layer in layers:
        if len(layer.inbound_nodes) and len(tf.nest.flatten(layer.inbound_nodes[-1].input_tensors)) != 1:
            raise ModelError(f"layer {layer.name!r} of {model.name!r} takes several inputs; activation "
                             "models support a top-level chain of single-input layers only.")
    return layers


def layer_names(model: tf.keras.Model) -> list[str]:
    """Every addressable layer: top-level names and ``part/layer`` for layers inside nested models."""
    names = []
    for layer in top_chain(model):
        names.append(layer.name)
        if isinstance(layer, tf.keras.Model):
            names += [f"{layer.name}/{inner.name}" for inner in layer.layers
                      if not isinstance(inner, tf.keras.layers.InputLayer)]
    return names


def activation_model(model: tf.keras.Model, names: Sequence[str]) -> tf.keras.Model:
    """A model with the same input whose outputs are the activations named `names`.

    Names are top-level layer names or ``"cnn/block1_conv1"`` for a layer inside a nested part
    (see `layer_names`). The returned model shares the original's weights; nothing is copied.
    """
    known = layer_names(model)
    missing = [n for n in names if n not in known]
    if missing:
        raise ModelError(f"no layer(s) {missing} in {model.name!r}; available: {', '.join(known)}.")
    wanted: dict[str, tf.Tensor] = {}
    inp = tf.keras.Input(model.input_shape[1:], name="image")
    x = inp
    for layer in top_chain(model):
        inner = [n.split("/", 1)[1] for n in names if n.startswith(layer.name + "/")]
        if inner:
            extractor = tf.keras.Model(layer.input, [layer.output] + [layer.get_layer(n).output for n in inner])
            x, *acts = extractor(x)
            wanted.update({f"{layer.name}/{n}": a for n, a in zip(inner, acts)})
        else:
            x = layer(x)
        wanted[layer.name] = x
    return tf.keras.Model(inp, [wanted[n] for n in names], name=f"{model.name}_activations")
