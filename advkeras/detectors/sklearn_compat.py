"""What makes advkeras detectors behave as scikit-learn estimators although they hold Keras models.

- `NotFittedDetectorError`: what a detector raises when it is used before `fit`. It is sklearn's
  `NotFittedError` (so sklearn tools and `check_is_fitted` users recognise it) and advkeras's `InputError`
  (so callers written against advkeras's errors keep catching it).
- `DetectorEstimatorMixin`: `sklearn.clone` keeps Keras models and other pre-fitted hyper-parameters by
  reference (sklearn would deep-copy a model, or refit-reset a fitted `RelevantNeuronSets`), and pickling
  drops the TF graphs derived from the model, which the detector rebuilds on first use.
"""
from __future__ import annotations

import copy
from typing import Any, ClassVar, Sequence

from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from advkeras.errors import InputError, ModelError


class NotFittedDetectorError(NotFittedError, InputError):
    """A detector was used before `fit`; the message says which fit call it needs."""


def require_fitted(estimator: Any, attributes: str | Sequence[str], fix: str) -> None:
    """Raise `NotFittedDetectorError` unless `estimator` has all fitted `attributes`; `fix` tells the user
    which fit call gives them (e.g. "call fit(x_clean) on clean images first")."""
    try:
        check_is_fitted(estimator, attributes)
    except NotFittedError:
        raise NotFittedDetectorError(f"this {type(estimator).__name__} is not fitted yet; {fix}") from None


def require_model(estimator: Any, name: str = "model") -> Any:
    """The Keras model held in parameter `name`, or a ModelError saying how to give it back: pickles made by
    older advkeras versions left the model out."""
    model = getattr(estimator, name, None)
    if model is None:
        raise ModelError(f"this {type(estimator).__name__} has no {name} (older advkeras pickles left it out); set "
                         f"its `{name}` attribute to the Keras model it was fitted with.")
    return model


class DetectorEstimatorMixin:
    """Mix in before `sklearn.base.BaseEstimator`.

    Subclasses list in `_shared_params` the constructor parameters that `clone` passes on as the same
    object (Keras models: copying one costs a save and a load and would detach the detector from the
    model the user attacks and defends; fitted objects given for reuse: sklearn's clone would return
    them unfitted), and in `_transient` the attributes derived from those (TF graphs, worker processes)
    that pickling leaves out; the detector rebuilds them from its fitted state when next needed.
    Keras models themselves pickle in TF 2.14 (as .keras bytes), so a pickled detector keeps its model.
    """

    _shared_params: ClassVar[tuple[str, ...]] = ()
    _transient: ClassVar[tuple[str, ...]] = ()

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        new_params = {name: value if name in self._shared_params else clone(value, safe=False)
                      for name, value in params.items()}
        new = type(self)(**new_params)
        kept = new.get_params(deep=False)
        for name, value in new_params.items():
            if kept[name] is not value:  # the same sanity check as sklearn's own clone
                raise RuntimeError(f"cannot clone {type(self).__name__}: its constructor does not store "
                                   f"parameter {name!r} as given.")
        # what sklearn's clone carries over besides the parameters (set_output, metadata routing)
        for attr in ("_sklearn_output_config", "_metadata_request"):
            if attr in self.__dict__:
                setattr(new, attr, copy.deepcopy(self.__dict__[attr]))
        return new

    def __getstate__(self) -> dict:
        # BaseEstimator may hand back the live __dict__; copy it before dropping anything
        state = dict(super().__getstate__())
        for name in self._transient:
            state.pop(name, None)
        return state
