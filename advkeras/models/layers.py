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
