"""The relevant-neuron detector: a random forest on the activations of class-relevant neurons."""
from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier

from advkeras.detectors.relevant_neurons.descriptors import split_prediction
from advkeras.detectors.relevant_neurons.neuron_sets import SET_NAMES, RelevantNeuronSets
from advkeras.detectors.sklearn_compat import DetectorEstimatorMixin, require_fitted
from advkeras.errors import DataError, InputError
from advkeras.evaluation.detection import threshold_at_fpr

_FORMAT = "advkeras.relevant_neurons/1"


class RelevantNeuronDetector(DetectorEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Clean (0) vs adversarial (1) from the descriptors of the neurons in one relevant set.

    X is what ``NeuronDescriptors(model, append_prediction=True)`` returns: descriptors plus the
    model's predicted class as last column. With ``use_label`` the neurons not relevant to the
    predicted class are zeroed, so the forest sees which class's evidence is (in)consistent.
    `sets` may be a fitted `RelevantNeuronSets` to reuse (then `mu` is ignored).

    Learned: ``sets_``, ``mask_`` (C x m), ``columns_`` (neurons fed to the forest), ``forest_``,
    ``oob_clean_scores_`` and ``threshold_`` (score threshold at `fpr` on those out-of-bag scores).
    """

    # fitted sets are given to be reused as they are: sklearn's clone would hand the copy unfitted sets
    _shared_params = ("sets",)

    def __init__(self, mu: float = 10.0, *, neuron_set: str = "shared", use_label: bool = True,
                 n_estimators: int = 1000, sets: RelevantNeuronSets | None = None, fpr: float = 0.05,
                 n_jobs: int | None = None, random_state: int = 0):
        self.mu = mu
        self.neuron_set = neuron_set
        self.use_label = use_label
        self.n_estimators = n_estimators
        self.sets = sets
        self.fpr = fpr
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> "RelevantNeuronDetector":
        """Select the relevant neurons (or reuse `sets`) and fit the forest on descriptors `X` (prediction
        column last) labelled `y`: 0 for clean, 1 for adversarial."""
        if self.neuron_set not in SET_NAMES:
            raise InputError(f"unknown neuron_set {self.neuron_set!r}; choose one of: {', '.join(SET_NAMES)}.")
        D, pred = split_prediction(X)
        y = np.asarray(y).astype(np.int64)
        if set(np.unique(y)) != {0, 1}:
            raise InputError("y must mark clean samples 0 and adversarial samples 1, and hold both.")
        if self.sets is not None:
            require_fitted(self.sets, "n_neurons_", "fit the RelevantNeuronSets given as sets= before fitting "
                                                    "the detector, or pass sets=None to fit them here.")
            if self.sets.n_neurons_ != D.shape[1]:
                raise InputError(f"the given sets describe {self.sets.n_neurons_} neurons, X has {D.shape[1]}.")
            self.sets_ = self.sets
        else:
            self.sets_ = RelevantNeuronSets(self.mu).fit(D[y == 0], pred[y == 0], D[y == 1], pred[y == 1])
        self.mask_ = self.sets_.mask(self.neuron_set)
        self.columns_ = np.flatnonzero(self.mask_.any(0))
        if not len(self.columns_):
            raise DataError(f"the {self.neuron_set!r} set is empty at mu={self.sets_.mu}; raise mu or use "
                            "another neuron_set.")
        self.forest_ = RandomForestClassifier(self.n_estimators, oob_score=True, n_jobs=self.n_jobs,
                                              random_state=self.random_state)
        self.forest_.fit(self._features(D, pred), y)
        self.classes_ = self.forest_.classes_
        oob = np.nan_to_num(self.forest_.oob_decision_function_[:, 1], nan=0.5)
        # Out-of-bag scores are honest held-out scores, so they calibrate thresholds without
        # spending clean images on a separate calibration split.
        self.oob_clean_scores_ = oob[y == 0]
        self.threshold_ = threshold_at_fpr(self.oob_clean_scores_, self.fpr)
        return self

    def _features(self, D: np.ndarray, pred: np.ndarray) -> np.ndarray:
        F = D[:, self.columns_]
        if self.use_label:
            if pred.max(initial=0) >= len(self.mask_):
                raise InputError(f"predicted class {pred.max()} has no relevant-neuron set (the sets know "
                                 f"{len(self.mask_)} classes).")
            F = F * self.mask_[pred][:, self.columns_]
        return F

    def _check(self, X: np.ndarray) -> np.ndarray:
        require_fitted(self, ["forest_", "mask_"], "call fit(X, y) first.")
        D, pred = split_prediction(X)
        if D.shape[1] != self.mask_.shape[1]:
            raise InputError(f"X describes {D.shape[1]} neurons but the detector was fitted on "
                             f"{self.mask_.shape[1]}; use the same model and layers.")
        return self._features(D, pred)

    def forest_inputs(self, X: np.ndarray) -> np.ndarray:
        """What the forest reads for descriptors X: the set's neurons, zeroed outside the predicted class's
        set when `use_label`."""
        return self._check(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Forest class probabilities, columns (clean, adversarial)."""
        F = self._check(X)
        return self.forest_.predict_proba(F)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Share of trees voting 'adversarial' (higher = more adversarial)."""
        return self.predict_proba(X)[:, 1]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 for adversarial, 0 for clean (forest majority vote, as in the paper)."""
        F = self._check(X)
        return self.forest_.predict(F)

    def save(self, path: str | Path) -> Path:
        """joblib file with the forest and the neuron sets (the Keras model is not included)."""
        path = Path(path)
        joblib.dump({"format": _FORMAT, "detector": self}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RelevantNeuronDetector":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"detector file {path} does not exist.")
        try:
            blob = joblib.load(path)
        except Exception as exc:  # joblib raises many kinds on corrupt files
            raise DataError(f"{path} is not a readable detector file ({exc}).") from exc
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise DataError(f"{path} is not a relevant-neuron detector saved by advkeras.")
        return blob["detector"]
