"""Encoder disagreement: the original model and the encoder-defended model run side by side; when
their predicted classes differ, the input is flagged as a possible adversarial.

An adversarial made on the original model moves its cnn features in a direction the encoder's code
tends to ignore, so the two heads part ways; on clean inputs they mostly agree.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator

from advkeras.detectors.sklearn_compat import DetectorEstimatorMixin, require_fitted
from advkeras.errors import InputError, ModelError
from advkeras.evaluation.detection import binary_detection_metrics
from advkeras.models import check_images, check_logits, predict_logits


class EncoderDisagreementDetector(DetectorEstimatorMixin, BaseEstimator):
    """sklearn-style detector over two classifiers with the same input and classes.

    `predict` returns 1 where the predicted classes differ; `decision_function` is a graded score
    (total-variation distance between the two softmax outputs, in [0, 1]) for ROC curves. Nothing is
    learned from data, but `fit` checks that the two models fit together, so every score needs it first.

    Learned: ``n_features_in_``, ``clean_flag_rate_`` (flag rate on the clean images given to `fit`: the
    expected false-positive rate) and, when labels are given, ``clean_accuracy_`` of both models.
    """

    _shared_params = ("original", "defended")

    def __init__(self, original: tf.keras.Model, defended: tf.keras.Model, *, batch_size: int = 256):
        self.original = original
        self.defended = defended
        self.batch_size = batch_size

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "EncoderDisagreementDetector":
        """Check the pair of models and record the flag rate on clean images `X` (the expected FPR); with
        labels `y`, also each model's accuracy on them."""
        self._check_pair()
        x = check_images(X, self.original, name="clean images")
        if not len(x):
            raise InputError("fit needs at least one clean image to estimate the false-positive rate.")
        original, defended = self._pred(self.original, x), self._pred(self.defended, x)
        self.n_features_in_ = int(np.prod(x.shape[1:]))
        self.clean_flag_rate_ = float((original != defended).mean())
        if y is not None:
            y = np.asarray(y)
            self.clean_accuracy_ = {"original": float((original == y).mean()),
                                    "defended": float((defended == y).mean())}
        return self

    def _check_pair(self) -> None:
        for m in (self.original, self.defended):
            check_logits(m)
        if tuple(self.original.input_shape) != tuple(self.defended.input_shape) or \
                self.original.output_shape[-1] != self.defended.output_shape[-1]:
            raise ModelError(f"the two models must take the same images and predict the same classes; got "
                             f"{self.original.input_shape} -> {self.original.output_shape} and "
                             f"{self.defended.input_shape} -> {self.defended.output_shape}.")

    def _check_fitted(self) -> None:
        require_fitted(self, "clean_flag_rate_", "call fit(x_clean) with clean images first (it checks that the "
                                                 "two models match and measures the clean flag rate).")

    def _pred(self, model: tf.keras.Model, x: np.ndarray) -> np.ndarray:
        return predict_logits(model, x, self.batch_size).argmax(1)

    def predict_pair(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted classes of (original, defended)."""
        self._check_fitted()
        x = check_images(x, self.original)
        return self._pred(self.original, x), self._pred(self.defended, x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """1 where the two models disagree (possible adversarial), else 0."""
        a, b = self.predict_pair(x)
        return (a != b).astype(np.int64)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Total-variation distance between the two models' class probabilities (higher: more suspect)."""
        self._check_fitted()
        x = check_images(x, self.original)
        p = tf.nn.softmax(predict_logits(self.original, x, self.batch_size)).numpy()
        q = tf.nn.softmax(predict_logits(self.defended, x, self.batch_size)).numpy()
        return 0.5 * np.abs(p - q).sum(1)

    def differentiable_score(self, x: tf.Tensor) -> tf.Tensor:
        """`decision_function` in TF ops, differentiable: what an adaptive attacker descends (advkeras.adaptive)."""
        self._check_fitted()
        p = tf.nn.softmax(self.original(x, training=False))
        q = tf.nn.softmax(self.defended(x, training=False))
        return 0.5 * tf.reduce_sum(tf.abs(p - q), axis=1)

    def evaluate(self, x_clean: np.ndarray, x_adv: np.ndarray) -> dict:
        """Detection rate on adversarials and false-positive rate on clean images (binary flags)."""
        return binary_detection_metrics(self.predict(x_clean).astype(bool), self.predict(x_adv).astype(bool))

    def __repr__(self) -> str:
        return (f"EncoderDisagreementDetector(original={self.original.name!r}, defended={self.defended.name!r}, "
                f"batch_size={self.batch_size})")
