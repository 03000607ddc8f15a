"""Neuron descriptors: one number per neuron (conv channel or dense unit) per image.

A conv channel's value is the squared L2 norm of its feature map, a dense unit's the square of its
activation; each layer's vector is divided by its L2 norm so layers of different scale weigh the
same; all layers but the last (the logits) are concatenated.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, TransformerMixin
from tqdm.auto import tqdm

from advkeras.detectors.sklearn_compat import DetectorEstimatorMixin, require_fitted, require_model
from advkeras.errors import InputError, ModelError
from advkeras.models import activation_model, check_images, get_parts, layer_names

_NEURON_LAYERS = (tf.keras.layers.Conv2D, tf.keras.layers.Dense)


def neuron_layers(model: tf.keras.Model) -> list[str]:
    """Conv and dense layers of a cnn+dnn classifier in order, as ``part/layer`` names, without the
    last one (the logits)."""
    get_parts(model)  # clear error for models without cnn/dnn
    names = []
    for name in layer_names(model):
        if "/" not in name:
            continue
        part, inner = name.split("/", 1)
        layer = model.get_layer(part).get_layer(inner)
        if isinstance(layer, _NEURON_LAYERS):
            names.append(name)
        elif isinstance(layer, tf.keras.Model):  # e.g. the VGG16 base inside "cnn"
            raise ModelError(f"layer {name!r} is a nested model; pass `layers=` with the names to describe "
                             "(see advkeras.models.layer_names).")
    if len(names) < 2:
        raise ModelError(f"model {model.name!r} has fewer than two conv/dense layers; nothing to describe.")
    return names[:-1]


def _describe(acts: tf.Tensor) -> tf.Tensor:
    sq = tf.square(acts)
    if len(acts.shape) == 4:
        sq = tf.reduce_sum(sq, axis=[1, 2])
    elif len(acts.shape) != 2:
        raise ModelError(f"cannot describe activations of shape {acts.shape}; use conv or dense layers.")
    norm = tf.norm(sq, axis=1, keepdims=True)
    return sq / tf.maximum(norm, 1e-12)


class NeuronDescriptors(DetectorEstimatorMixin, TransformerMixin, BaseEstimator):
    """Images -> per-neuron descriptors (N x m); with `append_prediction` the model's predicted
    class is appended as a last column, which is what `RelevantNeuronDetector` expects.

    The Keras model is used, never changed; `fit` only resolves the layers and neuron names (it needs
    no data), and `transform` needs it first. Learned: ``layers_``, ``layer_sizes_``, ``neuron_names_``,
    ``n_neurons_``. A pickled copy carries its model (Keras models pickle as .keras bytes).
    """

    _shared_params = ("model",)
    _transient = ("_extractor",)  # a Keras graph over the model's layers: rebuilt from layers_ on use

    def __init__(self, model: tf.keras.Model, *, layers: Sequence[str] | None = None,
                 append_prediction: bool = False, batch_size: int = 128, progress: bool = False):
        self.model = model
        self.layers = layers
        self.append_prediction = append_prediction
        self.batch_size = batch_size
        self.progress = progress

    def fit(self, X: np.ndarray | None = None, y: np.ndarray | None = None) -> "NeuronDescriptors":
        """Resolve the layers to describe and name their neurons; `X` and `y` are ignored (sklearn signature)."""
        self.layers_ = list(self.layers) if self.layers is not None else neuron_layers(self.model)
        self._extractor = self._build_extractor()
        self.layer_sizes_ = [int(t.shape[-1]) for t in self._extractor.outputs[:len(self.layers_)]]
        self.neuron_names_ = np.array([f"{name}:{i}" for name, size in zip(self.layers_, self.layer_sizes_)
                                       for i in range(size)])
        self.n_neurons_ = int(sum(self.layer_sizes_))
        return self

    def _build_extractor(self) -> tf.keras.Model:
        model = require_model(self)
        acts = activation_model(model, self.layers_)
        outputs = list(acts.outputs)
        if self.append_prediction:
            outputs.append(model(acts.input))
        return tf.keras.Model(acts.input, outputs)

    def _get_extractor(self) -> tf.keras.Model:
        require_fitted(self, ["layers_", "n_neurons_"], "call fit() first (it needs no data: it resolves the "
                                                        "layers to describe).")
        if getattr(self, "_extractor", None) is None:  # after unpickling
            self._extractor = self._build_extractor()
        return self._extractor

    def _batch(self, x: np.ndarray) -> np.ndarray:
        out = self._get_extractor()(x, training=False)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        n = len(self.layers_)
        parts = [_describe(a).numpy() for a in out[:n]]
        if self.append_prediction:
            parts.append(np.argmax(out[n].numpy(), axis=1)[:, None].astype(np.float32))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def tf_descriptors(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(descriptors without the prediction column, logits) in TF ops, differentiable in `x`: what an
        adaptive attacker follows through a surrogate of the detector (advkeras.adaptive.surrogates)."""
        out = self._get_extractor()(x, training=False)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        n = len(self.layers_)
        logits = out[n] if self.append_prediction else self.model(x, training=False)
        return tf.concat([_describe(a) for a in out[:n]], axis=1), logits

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Descriptors of images `X` (N x n_neurons_, plus the predicted class with `append_prediction`)."""
        self._get_extractor()  # fitted? (a clear error before any image checks)
        x = check_images(X, self.model, name="images")
        width = self.n_neurons_ + int(self.append_prediction)
        if not len(x):
            return np.zeros((0, width), np.float32)
        steps = range(0, len(x), self.batch_size)
        return np.concatenate([self._batch(x[i:i + self.batch_size])
                               for i in tqdm(steps, desc="descriptors", disable=not self.progress, leave=False)])


def split_prediction(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors, predicted class) from a matrix made with ``append_prediction=True``."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] < 2:
        raise InputError(f"expected descriptors with the predicted class as last column, got shape {X.shape}.")
    pred = X[:, -1]
    if np.any(pred != np.round(pred)) or np.any(pred < 0):
        raise InputError("the last column must hold predicted class ids; build X with "
                         "NeuronDescriptors(model, append_prediction=True).")
    return X[:, :-1], pred.astype(np.int64)
