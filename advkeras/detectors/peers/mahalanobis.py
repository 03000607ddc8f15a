"""Mahalanobis detector (Lee, Lee, Lee & Shin, NeurIPS 2018), without input pre-processing:
class-conditional Gaussians with a shared covariance per layer, fitted on clean features; each
layer's score is the distance to the closest class mean; a logistic regression combines layers."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression

from advkeras.detectors.sklearn_compat import DetectorEstimatorMixin, require_fitted, require_model
from advkeras.errors import InputError
from advkeras.evaluation.detection import threshold_at_fpr
from advkeras.models import activation_model, check_images, get_parts, predict_logits


def default_layers(model: tf.keras.Model) -> list[str]:
    """The cnn's feature vector and every hidden dense layer of the dnn."""
    _, dnn = get_parts(model)
    hidden = [f"dnn/{layer.name}" for layer in dnn.layers
              if isinstance(layer, tf.keras.layers.Dense) and layer.name != dnn.layers[-1].name]
    return ["cnn"] + hidden


def _pool(a: np.ndarray) -> np.ndarray:
    return a.mean(axis=(1, 2)) if a.ndim == 4 else a.reshape(len(a), -1)


class MahalanobisDetector(DetectorEstimatorMixin, BaseEstimator):
    """Learned: ``layers_``, ``means_`` and ``precisions_`` per layer, ``combiner_`` (logistic regression on
    the per-layer scores, fitted when adversarial examples are given), ``threshold_`` at `fpr`."""

    _shared_params = ("model",)
    _transient = ("_extractor",)  # a Keras graph over the model's layers: rebuilt from layers_ on use

    def __init__(self, model: tf.keras.Model, *, layers: Sequence[str] | None = None, fpr: float = 0.05,
                 batch_size: int = 256):
        self.model = model
        self.layers = layers
        self.fpr = fpr
        self.batch_size = batch_size

    def _get_extractor(self) -> tf.keras.Model:
        if getattr(self, "_extractor", None) is None:
            self._extractor = activation_model(require_model(self), self.layers_)
        return self._extractor

    def _check_fitted(self) -> None:
        require_fitted(self, ["means_", "threshold_"], "call fit(clean_images, labels) first.")

    def _features(self, x: np.ndarray) -> list[np.ndarray]:
        x = check_images(x, self.model, name="images")
        outs = [[] for _ in self.layers_]
        extractor = self._get_extractor()
        for i in range(0, len(x), self.batch_size):
            acts = extractor(x[i:i + self.batch_size], training=False)
            acts = acts if isinstance(acts, (list, tuple)) else [acts]
            for k, a in enumerate(acts):
                outs[k].append(_pool(a.numpy()).astype(np.float64))
        return [np.concatenate(o) for o in outs]

    def _layer_scores(self, x: np.ndarray) -> np.ndarray:
        cols = []
        for f, means, prec in zip(self._features(x), self.means_, self.precisions_):
            d = f[:, None, :] - means[None]                   # N x C x d
            cols.append(np.einsum("ncd,de,nce->nc", d, prec, d).min(1))
        return np.stack(cols, 1)

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, X_adv: np.ndarray | None = None, *,
            X_stats: np.ndarray | None = None, y_stats: np.ndarray | None = None) -> "MahalanobisDetector":
        """Class means and shared covariance from (X_stats, y_stats) -- the classifier's training
        images, as in Lee et al. -- or from the clean images `X` with labels `y` (default: the classes
        the model predicts for them); with `X_adv`, the layer weights too. The threshold is set on `X`.

        Statistics taken from the same clean images the threshold is set on make those images look
        closer than unseen ones, so pass X_stats when you have it."""
        self.layers_ = list(self.layers) if self.layers is not None else default_layers(self.model)
        self._extractor = activation_model(self.model, self.layers_)
        y_clean = self._labels(X, y)
        if X_stats is None:
            X_stats, y_stats = X, y_clean
        if y_stats is None:
            raise InputError("X_stats needs its labels: pass y_stats (one class id per image) too.")
        y_stats = np.asarray(y_stats, dtype=np.int64)
        classes = np.unique(y_stats)
        self.means_, self.precisions_ = [], []
        for f in self._features(X_stats):
            means = np.stack([f[y_stats == c].mean(0) for c in classes])
            centred = f - means[np.searchsorted(classes, y_stats)]
            # Ledoit-Wolf shrinkage: far fewer images than units in a layer would make the plain
            # covariance singular and its inverse meaningless.
            self.means_.append(means)
            self.precisions_.append(LedoitWolf(assume_centered=True).fit(centred).precision_)
        clean = self._layer_scores(X)
        if X_adv is not None and len(X_adv):
            adv = self._layer_scores(X_adv)
            self.combiner_ = LogisticRegression(max_iter=1000).fit(np.r_[clean, adv],
                                                                  np.r_[np.zeros(len(clean)), np.ones(len(adv))])
        else:
            self.combiner_ = None
        self.threshold_ = threshold_at_fpr(self._combine(clean), self.fpr)
        return self

    def _labels(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """`y` as class ids, checked against `X`; without labels, the classes the model predicts."""
        if y is None:
            x = check_images(X, self.model, name="images")
            return predict_logits(self.model, x, self.batch_size).argmax(1).astype(np.int64)
        y = np.asarray(y, dtype=np.int64)
        if len(y) != len(X):
            raise InputError(f"{len(X)} clean images but {len(y)} labels.")
        return y

    def _combine(self, s: np.ndarray) -> np.ndarray:
        return s[:, -1] if self.combiner_ is None else self.combiner_.decision_function(s)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Mahalanobis score (the last layer's, or the fitted combination of layers'; higher: more suspect)."""
        self._check_fitted()
        return self._combine(self._layer_scores(X))

    def differentiable_score(self, x: tf.Tensor) -> tf.Tensor:
        """`decision_function` in TF ops (float32), differentiable: what an adaptive attacker descends."""
        self._check_fitted()
        acts = self._get_extractor()(x, training=False)
        cols = []
        for a, means, prec in zip(acts if isinstance(acts, (list, tuple)) else [acts], self.means_, self.precisions_):
            f = tf.reduce_mean(a, axis=[1, 2]) if len(a.shape) == 4 else tf.reshape(a, [tf.shape(a)[0], -1])
            d = f[:, None, :] - tf.constant(means, tf.float32)[None]
            cols.append(tf.reduce_min(tf.einsum("ncd,de,nce->nc", d, tf.constant(prec, tf.float32), d), axis=1))
        s = tf.stack(cols, axis=1)
        if self.combiner_ is None:
            return s[:, -1]
        return tf.linalg.matvec(s, tf.constant(self.combiner_.coef_[0], tf.float32)) + float(self.combiner_.intercept_[0])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 for adversarial (score above the threshold calibrated at `fpr`), 0 for clean."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)
