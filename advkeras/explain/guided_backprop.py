"""Native TF2 guided backpropagation (and deconvnet): in-graph, compiled, usable inside a SavedModel.

Guided backprop (Springenberg et al. 2015) passes a gradient back through a ReLU only where both the
forward input and the backward signal are positive. We get exactly that, without copying or editing
the user's model, by putting an identity after every ReLU whose gradient is ``relu(dy)``: the layer's
own ReLU then applies the forward mask. Deconvnet drops the forward mask: there the layer runs
without its activation and a ReLU whose gradient is ``relu(dy)`` follows it. This is the formulation
iNNvestigate uses, which is why both agree (tests/explain/test_guided_backprop.py).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from advkeras.errors import InputError, ModelError
from advkeras.explain.flat_model import flat_model, has_relu, leaf_layers
from advkeras.models.checks import check_images, check_logits

METHODS = ("guided_backprop", "deconvnet")


@tf.custom_gradient
def _positive_gradient(x: tf.Tensor):
    def grad(dy):
        return tf.nn.relu(dy)
    return tf.identity(x), grad


@tf.keras.utils.register_keras_serializable(package="advkeras")
class GuidedGradient(tf.keras.layers.Layer):
    """Identity forward; backward lets only positive gradient through (placed after a ReLU)."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return _positive_gradient(inputs)


@tf.keras.utils.register_keras_serializable(package="advkeras")
class DeconvGradient(tf.keras.layers.Layer):
    """Deconvnet ReLU: forward relu(z); backward relu(dy) whatever the sign of z.

    Placed after a copy of the layer without its ReLU (the pre-activation z).
    """

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        @tf.custom_gradient
        def deconv_relu(z):
            def grad(dy):
                return tf.nn.relu(dy)
            return tf.nn.relu(z), grad
        return deconv_relu(inputs)


def _linear_twin(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer | None:
    """The layer without its ReLU, sharing the original's variables (None for a bare ReLU layer).

    Built from the layer's config with activation "linear"; its kernel and bias *are* the original's
    variables, so nothing is copied and the user's layer is not touched.
    """
    if isinstance(layer, tf.keras.layers.ReLU):
        return None
    if not isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)):
        raise ModelError(f"native deconvnet handles ReLU in Conv2D, Dense and ReLU layers, not in "
                         f"{type(layer).__name__} {layer.name!r}; use InnvestigateWorker(...).analyze(x, "
                         "'deconvnet') or method='guided_backprop'.")
    twin = type(layer).from_config({**layer.get_config(), "activation": "linear", "name": f"{layer.name}_linear"})
    twin.kernel = layer.kernel
    twin.bias = layer.bias if layer.use_bias else None
    twin.built = True
    return twin


def guided_model(model: tf.keras.Model, method: str = "guided_backprop") -> tf.keras.Model:
    """A flat model with `model`'s weights whose input gradient is the guided-backprop (or deconvnet) signal."""
    check_logits(model)
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}.")
    if method == "guided_backprop":
        wrap = (lambda layer, out: GuidedGradient(name=f"{layer.name}_guided")(out) if has_relu(layer) else out)
        return flat_model(model, wrap, name=f"{model.name}_guided")
    inp = tf.keras.Input(model.input_shape[1:], name="image")
    x = inp
    for layer in leaf_layers(model):
        if has_relu(layer):
            twin = _linear_twin(layer)
            x = DeconvGradient(name=f"{layer.name}_deconv")(x if twin is None else twin(x))
        else:
            x = layer(x)
    return tf.keras.Model(inp, x, name=f"{model.name}_deconvnet")


def response_function(model: tf.keras.Model, method: str = "guided_backprop") -> tf.types.experimental.Function:
    """A compiled ``f(x) -> (response, logits)``: the input gradient of each image's top logit.

    `response` has the image shape; the class analyzed is the predicted one (iNNvestigate's
    "max_activation"). The function is a `tf.function`, so it can be attached to a SavedModel.
    """
    gmodel = guided_model(model, method)

    @tf.function(input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)], autograph=False)
    def response(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = gmodel(x, training=False)
            top = tf.reduce_max(logits, axis=1)
        return tape.gradient(top, x), logits

    response.guided_model = gmodel  # keep the layers alive with the function
    return response


def guided_backprop(model: tf.keras.Model, x: np.ndarray, *, method: str = "guided_backprop",
                    batch_size: int = 128) -> np.ndarray:
    """Feature responses (input-space guided backprop or deconvnet maps) of `x`, same shape as `x`."""
    x = check_images(x, model)
    fn = response_function(model, method)
    out = [fn(tf.constant(x[i:i + batch_size]))[0].numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros_like(x)
