"""EOT (Athalye et al. 2018): attack a randomised model through the expectation of its answers.

A defense that draws noise or transformations at inference gives a different gradient at each call; one
sample of it points an attack the wrong way often enough to look robust. Averaging the logits of several
draws in one graph makes the attack follow the gradient of the expected logits (the mean of the draws'
gradients of the logits; EOT proper averages the gradient of the loss, which differs where the loss is not
linear in the logits).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from advkeras.errors import InputError


def is_randomised(model: tf.keras.Model, x: np.ndarray, trials: int = 3) -> bool:
    """Whether `model` answers the same images differently from call to call in inference mode."""
    x = np.asarray(x[:8], np.float32)
    first = model(x, training=False).numpy()
    return any(not np.array_equal(first, model(x, training=False).numpy()) for _ in range(trials - 1))


def eot_model(model: tf.keras.Model, samples: int = 8) -> tf.keras.Model:
    """A view of `model` whose logits are the mean of `samples` independent draws of it: attack this view (its
    gradient is the expected gradient) and judge success on `model` itself."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise InputError(f"samples={samples!r}: EOT averages at least 2 draws of the model; give a whole number >= 2.")
    inp = tf.keras.Input(model.input_shape[1:], name="image")
    draws = [model(inp, training=False) for _ in range(samples)]
    return tf.keras.Model(inp, tf.keras.layers.Average(name="expected_logits")(draws), name=f"{model.name}_eot")
