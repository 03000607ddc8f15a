"""Errors advkeras raises for bad input; every message names the problem and the fix."""


class AdvKerasError(ValueError):
    """Base class: bad input that advkeras refuses rather than give a wrong answer."""


class DataError(AdvKerasError):
    """Bad or missing data: missing or empty folder, corrupt file, unknown sample name."""


class ModelError(AdvKerasError):
    """A model advkeras cannot use as given: no cnn/dnn parts, probabilities out, unknown backbone."""


class InputError(AdvKerasError):
    """Bad arrays or arguments: wrong shape, dtype, range, NaN, unknown attack name, eps out of range."""


class NoStartingPointError(InputError):
    """A targeted decision-based attack found no image the model puts in the target class to start from (a
    model that answers one class for everything, or a batch without the target class)."""
