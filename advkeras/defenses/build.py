"""One entry point over the defenses, by the names the CLI and the assessment config use."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import tensorflow as tf

from advkeras.data.dataset import Dataset
from advkeras.defenses.adversarial_training import adversarial_retraining, pgd_training
from advkeras.defenses.autoencoders import encoder_defense, initial_autoencoder, middle_autoencoder
from advkeras.defenses.result import DefenseResult
from advkeras.errors import InputError

DEFENSES: dict[str, Callable[..., DefenseResult]] = {
    "adversarial-training": adversarial_retraining,
    "pgd-training": pgd_training,
    "middle-ae": middle_autoencoder,
    "encoder": encoder_defense,
    "initial-ae": initial_autoencoder,
}


def build_defense(name: str, model: tf.keras.Model, train: Dataset, val: Dataset | None = None, *,
                  seed: int = 0, **params: Any) -> DefenseResult:
    """Build defense `name` around (a copy of) `model`; `params` go to its builder."""
    check_defense_params(name, params)
    return DEFENSES[name](model, train, val, seed=seed, **params)


def build_defenses(defenses: Mapping[str, dict[str, Any]], model: tf.keras.Model, train: Dataset,
                   val: Dataset | None = None, *, seed: int = 0) -> dict[str, DefenseResult]:
    """Build every defense of `defenses` (name -> builder parameters), in that order, all checked first.

    The encoder reuses the middle autoencoder built here with the same seed, unless its own
    parameters configure a middle autoencoder of their own."""
    for name, params in defenses.items():
        check_defense_params(name, params)
    built: dict[str, DefenseResult] = {}
    for name in sorted(defenses, key=lambda n: n != "middle-ae"):
        params = dict(defenses[name])
        if "middle-ae" in built and reuses_middle(name, params):
            params.setdefault("middle", built["middle-ae"])
        built[name] = build_defense(name, model, train, val, seed=seed, **params)
    return {name: built[name] for name in defenses}


def reuses_middle(name: str, params: dict[str, Any]) -> bool:
    """Whether defense `name` with `params` can reuse an already trained middle autoencoder: only the
    encoder can, and only when its params do not configure a middle autoencoder of its own."""
    return name == "encoder" and set(params) <= _keyword_params(DEFENSES["encoder"])


def _keyword_params(builder: Callable) -> set[str]:
    return {p for p, v in inspect.signature(builder).parameters.items() if v.kind is v.KEYWORD_ONLY and p != "seed"}


def check_defense_params(name: str, params: dict[str, Any]) -> None:
    """Refuse an unknown defense name or parameter up front (before hours of training elsewhere)."""
    if name not in DEFENSES:
        raise InputError(f"unknown defense {name!r}; choose one of: {', '.join(DEFENSES)}.")
    accepted = _keyword_params(DEFENSES[name])
    if name == "encoder":
        accepted |= _keyword_params(middle_autoencoder)  # the encoder passes these on to its middle autoencoder
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InputError(f"{name} has no parameter {', '.join(map(repr, unknown))}; it accepts: "
                         f"{', '.join(sorted(accepted))}.")
