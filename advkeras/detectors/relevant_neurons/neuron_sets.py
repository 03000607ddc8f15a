"""Class-relevant neuron sets: mu-Lasso on clean descriptors (r_clean), on adversarial descriptors
(r_adv), their intersection (shared) and symmetric difference."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from advkeras.detectors.relevant_neurons.mu_lasso import mu_lasso, relevant_mask
from advkeras.errors import InputError

SET_NAMES = ("clean", "adv", "shared", "sym_diff", "all")


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or (len(labels) and (labels.min() < 0 or labels.max() >= n_classes)):
        raise InputError(f"labels must be class ids in [0, {n_classes - 1}], got {labels[:10]}...")
    return np.eye(n_classes)[labels]


class RelevantNeuronSets(BaseEstimator):
    """Per-class relevant neurons from mu-Lasso (``||w_j||_1 <= mu``), on clean and on adversarial
    descriptors; labels are the classes the model predicts (the concept it believes it sees).

    Learned: ``W_clean_``, ``W_adv_`` (m x C weights), ``clean_``, ``adv_`` (C x m masks),
    ``solver_`` (iterations and relative duality gaps, overall and per class). `max_iter` caps the
    projected-gradient fallback that follows the exact working-set stage of `mu_lasso`.
    """

    def __init__(self, mu: float = 10.0, *, n_classes: int | None = None, positive: bool = False,
                 tol: float = 1e-4, max_iter: int = 500):
        self.mu = mu
        self.n_classes = n_classes
        self.positive = positive
        self.tol = tol
        self.max_iter = max_iter

    def _solve(self, X: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, dict]:
        res = mu_lasso(np.asarray(X, np.float64).T, one_hot(labels, self.n_classes_), self.mu,
                       positive=self.positive, tol=self.tol, max_iter=self.max_iter)
        # per class: working-set rounds + SPG iterations, and the relative duality gap the stopping
        # rule compares with tol (a bound on the objective's relative distance to the optimum)
        return res.W, {"iterations": res.iterations, "converged": res.converged,
                       "max_rel_gap": float(res.relative_gap.max()),
                       "n_iter": res.n_iter.tolist(), "rel_gap": res.relative_gap.tolist()}

    def fit(self, X_clean: np.ndarray, labels_clean: np.ndarray, X_adv: np.ndarray | None = None,
            labels_adv: np.ndarray | None = None) -> "RelevantNeuronSets":
        if X_clean.ndim != 2 or len(X_clean) != len(labels_clean):
            raise InputError(f"X_clean must be samples x neurons with one label each; got {X_clean.shape} "
                             f"and {len(labels_clean)} labels.")
        labels = [np.asarray(labels_clean)] + ([] if labels_adv is None else [np.asarray(labels_adv)])
        self.n_classes_ = int(self.n_classes or max(int(lab.max()) for lab in labels if len(lab)) + 1)
        self.n_neurons_ = X_clean.shape[1]
        self.W_clean_, info_clean = self._solve(X_clean, labels_clean)
        self.solver_ = {"clean": info_clean}
        self.clean_ = relevant_mask(self.W_clean_).T
        if X_adv is not None:
            if X_adv.shape[1] != self.n_neurons_:
                raise InputError(f"X_adv has {X_adv.shape[1]} neurons, X_clean {self.n_neurons_}.")
            self.W_adv_, self.solver_["adv"] = self._solve(X_adv, labels_adv)
            self.adv_ = relevant_mask(self.W_adv_).T
        else:
            self.W_adv_, self.adv_ = None, None
        return self

    def mask(self, name: str) -> np.ndarray:
        """C x m boolean mask of the set `name` (one of SET_NAMES)."""
        if name not in SET_NAMES:
            raise InputError(f"unknown neuron set {name!r}; choose one of: {', '.join(SET_NAMES)}.")
        if name == "all":
            return np.ones((self.n_classes_, self.n_neurons_), bool)
        if name == "clean":
            return self.clean_
        if self.adv_ is None:
            raise InputError(f"the {name!r} set needs adversarial descriptors; fit with X_adv and labels_adv.")
        return {"adv": self.adv_, "shared": self.clean_ & self.adv_, "sym_diff": self.clean_ ^ self.adv_}[name]

    def summary(self, neuron_names: np.ndarray | None = None) -> dict:
        """Per set: neurons selected per class, their union, and as % of all neurons."""
        out = {"mu": self.mu, "n_neurons": int(self.n_neurons_), "solver": self.solver_, "sets": {}}
        for name in SET_NAMES[:-1]:
            if name != "clean" and self.adv_ is None:
                continue
            m = self.mask(name)
            per_class = m.sum(1)
            out["sets"][name] = {"per_class": per_class.tolist(), "union": int(m.any(0).sum()),
                                 "mean_per_class": float(per_class.mean()),
                                 "pct_per_class": float(100 * per_class.mean() / self.n_neurons_),
                                 "pct_union": float(100 * m.any(0).mean())}
            if neuron_names is not None:
                out["sets"][name]["neurons"] = [neuron_names[row].tolist() for row in m]
        return out
