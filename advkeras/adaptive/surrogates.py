"""Differentiable stand-ins for detectors an attacker cannot differentiate (Carlini & Wagner 2017, section 5).

A random forest has no gradient. The attacker fits a linear model to imitate the forest on the inputs it was
fitted on (its out-of-bag votes, i.e. what it says of points it did not train on) and follows that model's
gradient; the real forest then judges the result, so the figure is the surrogate's transfer to the real
detector. How well the surrogate ranks like the forest is recorded in its description.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression

from advkeras.adaptive.detectors import Differentiable, spread
from advkeras.detectors.relevant_neurons import NeuronDescriptors, RelevantNeuronDetector
from advkeras.errors import InputError
from advkeras.evaluation.detection import threshold_at_fpr


def forest_surrogate(descriptors: NeuronDescriptors, detector: RelevantNeuronDetector, X: np.ndarray,
                     y: np.ndarray, *, fpr: float = 0.05) -> Differentiable:
    """Logistic regression on the forest's inputs (`detector.forest_inputs`) of (X, y), the descriptors with
    prediction column and clean (0) / adversarial (1) labels the forest was fitted on, trained to reproduce the
    forest's out-of-bag votes (its labels where a vote is missing). Its score is computed from images in TF,
    through the descriptors; its threshold is at `fpr` on the clean rows of X."""
    y = np.asarray(y).astype(np.int64)
    if set(np.unique(y)) != {0, 1}:
        raise InputError("the surrogate needs the forest's fitting data: clean rows labelled 0 and adversarial 1.")
    F = detector.forest_inputs(X).astype(np.float64)
    oob = getattr(detector.forest_, "oob_decision_function_", None)
    votes = y if oob is None or len(oob) != len(y) else \
        np.where(np.isnan(oob[:, 1]), y, (np.nan_to_num(oob[:, 1]) > 0.5).astype(np.int64))
    if len(np.unique(votes)) < 2:
        votes = y  # the forest votes one way everywhere: imitate the labels instead
    mean, std = F.mean(0), F.std(0) + 1e-8
    lr = LogisticRegression(max_iter=2000).fit((F - mean) / std, votes)
    w = tf.constant(lr.coef_[0] / std, tf.float32)
    b = float(lr.intercept_[0] - np.sum(mean * lr.coef_[0] / std))
    columns = tf.constant(detector.columns_, tf.int32)
    mask = tf.constant(detector.mask_[:, detector.columns_], tf.float32)

    def score(x: tf.Tensor) -> tf.Tensor:
        D, logits = descriptors.tf_descriptors(x)
        F = tf.gather(D, columns, axis=1)
        if detector.use_label:
            F = F * tf.gather(mask, tf.argmax(logits, axis=1))
        return tf.linalg.matvec(F, w) + b

    clean = lr.decision_function((F[y == 0] - mean) / std)
    agree = spearmanr(lr.decision_function((F - mean) / std), detector.forest_.predict_proba(F)[:, 1]).correlation
    return Differentiable(score, threshold_at_fpr(clean, fpr), spread(clean), exact=False,
                          what=f"a logistic-regression surrogate of the forest (rank correlation {agree:.2f})")
