"""Small registered layers used inside advkeras models (serializable, so `.keras` files reload them)."""
from __future__ import annotations

import tensorflow as tf

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@tf.keras.utils.register_keras_serializable(package="advkeras")
class CaffePreprocess(tf.keras.layers.Layer):
    """[0, 1] RGB -> the 'caffe' input VGG16's ImageNet weights expect (0-255 BGR, mean removed).

    Keeping this inside the model lets every advkeras model take [0, 1] images, so attacks
    and bounds are the same for all backbones.
    """

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        bgr = inputs[..., ::-1] * 255.0
        return bgr - tf.constant(_CAFFE_MEAN_BGR, dtype=inputs.dtype)


@tf.keras.utils.register_keras_serializable(package="advkeras")
class Jitter(tf.keras.layers.Layer):
    """Adds uniform noise in [-noise, noise] and a random shift of up to `max_shift` pixels to each call.

    Its random ops carry op seeds from `seed`: different draws on every call, the same ones in every run,
    and allowed under op determinism (TF refuses unseeded random ops there)."""

    def __init__(self, noise: float = 16 / 255, max_shift: int = 2, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.noise, self.max_shift, self.seed = float(noise), int(max_shift), int(seed)

    def call(self, x):
        shift = tf.random.uniform([2], -self.max_shift, self.max_shift + 1, dtype=tf.int32, seed=self.seed)
        x = tf.roll(x, shift, axis=[1, 2])
        return tf.clip_by_value(x + tf.random.uniform(tf.shape(x), -self.noise, self.noise, seed=self.seed + 1),
                                0.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "noise": self.noise, "max_shift": self.max_shift, "seed": self.seed}
