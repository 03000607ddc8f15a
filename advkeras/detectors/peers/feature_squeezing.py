"""Feature Squeezing (Xu, Evans & Qi, NDSS 2018): compare the model's softmax on an image with its
softmax on squeezed copies (bit-depth reduction, median filter); a large L1 gap means adversarial."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy.ndimage import median_filter
from sklearn.base import BaseEstimator

from advkeras.detectors.sklearn_compat import DetectorEstimatorMixin, require_fitted
from advkeras.errors import InputError
from advkeras.evaluation.detection import threshold_at_fpr
from advkeras.models import check_images, check_logits, predict_logits


def reduce_bit_depth(x: np.ndarray, bits: int) -> np.ndarray:
    """Quantise [0, 1] images to 2**bits levels."""
    levels = 2 ** bits - 1
    return np.round(x * levels) / levels


def median_smooth(x: np.ndarray, size: int) -> np.ndarray:
    """Median filter of `size` x `size` over each channel of each image."""
    return median_filter(x, size=(1, size, size, 1), mode="reflect")


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class FeatureSqueezing(DetectorEstimatorMixin, BaseEstimator):
    """Score = max over squeezers of ||softmax(f(x)) - softmax(f(squeeze(x)))||_1; the threshold is
    set on clean images only, at false-positive rate `fpr` (the paper's 5 %).

    Defaults follow the paper: 1-bit depth for grey (MNIST) images and 5 bits for colour, median
    2 x 2. Learned: ``threshold_``; every score needs `fit` first.
    """

    _shared_params = ("model",)

    def __init__(self, model: tf.keras.Model, *, bits: int | None = None, median_size: int = 2,
                 fpr: float = 0.05, batch_size: int = 256):
        self.model = model
        self.bits = bits
        self.median_size = median_size
        self.fpr = fpr
        self.batch_size = batch_size

    def _squeezers(self, channels: int) -> list:
        out = [lambda a: reduce_bit_depth(a, self.bits or (1 if channels == 1 else 5))]
        if self.median_size and self.median_size > 1:
            out.append(lambda a: median_smooth(a, self.median_size))
        return out

    def _check_fitted(self) -> None:
        require_fitted(self, "threshold_", "call fit(clean_images) first to calibrate the threshold.")

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Largest L1 gap between the softmax of an image and of its squeezed copies (higher: more suspect)."""
        self._check_fitted()
        return self._gaps(X)

    def _gaps(self, X: np.ndarray) -> np.ndarray:
        check_logits(self.model)
        x = check_images(X, self.model, name="images")
        p = _softmax(predict_logits(self.model, x, self.batch_size))
        gaps = [np.abs(p - _softmax(predict_logits(self.model, sq(x).astype(np.float32), self.batch_size))).sum(1)
                for sq in self._squeezers(x.shape[-1])]
        return np.max(gaps, axis=0)

    def differentiable_score(self, x: tf.Tensor) -> tf.Tensor:
        """`decision_function` in TF with BPDA through the squeezers (exact forward; on the backward pass each
        squeezer is the identity, as neither rounding nor a median has a useful gradient): what an adaptive
        attacker descends (advkeras.adaptive)."""
        from advkeras.adaptive.bpda import straight_through  # the adaptive package imports the detectors

        self._check_fitted()
        p = tf.nn.softmax(self.model(x, training=False))
        gaps = []
        for squeeze in self._squeezers(int(x.shape[-1])):
            sq = tf.numpy_function(lambda a, f=squeeze: f(a).astype(np.float32), [x], tf.float32)
            sq = straight_through(x, tf.ensure_shape(sq, x.shape))
            gaps.append(tf.reduce_sum(tf.abs(p - tf.nn.softmax(self.model(sq, training=False))), axis=1))
        return tf.reduce_max(tf.stack(gaps), axis=0)

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "FeatureSqueezing":
        """Calibrate the threshold on clean images `X` (no adversarials needed; `y` is ignored)."""
        if not len(X):
            raise InputError("feature squeezing needs clean images to calibrate its threshold.")
        self.threshold_ = threshold_at_fpr(self._gaps(X), self.fpr)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 for adversarial (score above the calibrated threshold), 0 for clean."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)
