"""Feature Squeezing (Xu, Evans & Qi, NDSS 2018): compare the model's softmax on an image with its
softmax on squeezed copies (bit-depth reduction, median filter); a large L1 gap means adversarial."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy.ndimage import median_filter
from sklearn.base import BaseEstimator

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


class FeatureSqueezing(BaseEstimator):
    """Score = max over squeezers of ||softmax(f(x)) - softmax(f(squeeze(x)))||_1; the threshold is
    set on clean images only, at false-positive rate `fpr` (the paper's 5 %).

    Defaults follow the paper: 1-bit depth for grey (MNIST) images and 5 bits for colour, median
    2 x 2. Learned: ``threshold_``.
    """

    def __init__(self, model: tf.keras.Model, *, bits: int | None = None, median_size: int = 2,
                 fpr: float = 0.05, batch_size: int = 256):
        self.model = model
        self.bits = bits
        self.median_size = median_size
        self.fpr = fpr
        self.batch_size = batch_size

    def _bits(self, x: np.ndarray) -> int:
        return self.bits or (1 if x.shape[-1] == 1 else 5)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_logits(self.model)
        x = check_images(X, self.model, name="images")
        p = _softmax(predict_logits(self.model, x, self.batch_size))
        squeezed = [reduce_bit_depth(x, self._bits(x))]
        if self.median_size and self.median_size > 1:
            squeezed.append(median_smooth(x, self.median_size))
        gaps = [np.abs(p - _softmax(predict_logits(self.model, s.astype(np.float32), self.batch_size))).sum(1)
                for s in squeezed]
        return np.max(gaps, axis=0)

    def fit(self, X_clean: np.ndarray, y: np.ndarray | None = None) -> "FeatureSqueezing":
        """Calibrate the threshold on clean images (no adversarials needed)."""
        if not len(X_clean):
            raise InputError("feature squeezing needs clean images to calibrate its threshold.")
        self.threshold_ = threshold_at_fpr(self.decision_function(X_clean), self.fpr)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "threshold_"):
            raise InputError("call fit(clean_images) first to calibrate the threshold.")
        return (self.decision_function(X) > self.threshold_).astype(np.int64)
