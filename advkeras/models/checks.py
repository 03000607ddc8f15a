"""Checks on user models: logits (not probabilities) out, image shape in."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from advkeras.errors import InputError, ModelError


def _last_activation(model: tf.keras.Model):
    layer = model.layers[-1]
    while isinstance(layer, tf.keras.Model):
        layer = layer.layers[-1]
    return layer, getattr(layer, "activation", None)


def check_logits(model: tf.keras.Model) -> None:
    """Raise when the model ends in a softmax/sigmoid: attacks and detectors need logits."""
    layer, act = _last_activation(model)
    is_prob = isinstance(layer, tf.keras.layers.Softmax) or act in (tf.keras.activations.softmax,
                                                                    tf.keras.activations.sigmoid)
    if is_prob:
        raise ModelError(f"model {model.name!r} outputs probabilities (its last layer {layer.name!r} applies "
                         "a softmax/sigmoid). advkeras needs logits: rebuild the last Dense layer with "
                         "activation=None, or pass a model without the final Softmax layer.")


def check_images(x: np.ndarray, model: tf.keras.Model | None = None, *, name: str = "x") -> np.ndarray:
    """Validate a batch of images (float, [0, 1], NHWC, finite, matching the model); return it as float32."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise InputError(f"{name} has dtype {x.dtype}; expected float32 images in [0, 1].")
    if x.dtype.kind in "iu":
        raise InputError(f"{name} has integer dtype {x.dtype}; convert with x.astype('float32') / 255.")
    if x.ndim != 4:
        raise InputError(f"{name} has shape {x.shape}; expected a batch N x H x W x C (channels last).")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{name} contains NaN or infinite values; clean the images first.")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise InputError(f"{name} has values in [{x.min():.3g}, {x.max():.3g}]; images must be in [0, 1] "
                         "(divide uint8 images by 255).")
    if model is not None:
        expected = tuple(model.input_shape[1:])
        if tuple(x.shape[1:]) != expected:
            raise InputError(f"{name} has images of shape {x.shape[1:]} but the model expects {expected}.")
    return x.astype(np.float32, copy=False)
