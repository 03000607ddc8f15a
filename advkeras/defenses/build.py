"""One entry point over the defenses, by the names the CLI and the assessment config use."""
from __future__ import annotations

import inspect
from typing import Any, Callable

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


def reuses_middle(name: str, params: dict[str, Any]) -> bool:
    """Whether defense `name` with `params` can reuse an already trained middle autoencoder: only the
    encoder can, and only when its params do not configure a middle autoencoder of its own."""
    if name != "encoder":
        return False
    own = {p for p, v in inspect.signature(DEFENSES["encoder"]).parameters.items() if v.kind is v.KEYWORD_ONLY}
    return set(params) <= own


def check_defense_params(name: str, params: dict[str, Any]) -> None:
    """Refuse an unknown defense name or parameter up front (before hours of training elsewhere)."""
    if name not in DEFENSES:
        raise InputError(f"unknown defense {name!r}; choose one of: {', '.join(DEFENSES)}.")
    builders = [DEFENSES[name]] + ([middle_autoencoder] if name == "encoder" else [])  # encoder passes extras on
    accepted = list(dict.fromkeys(p for b in builders for p, v in inspect.signature(b).parameters.items()
                                  if v.kind is v.KEYWORD_ONLY and p != "seed"))
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InputError(f"{name} has no parameter {', '.join(map(repr, unknown))}; it accepts: "
                         f"{', '.join(accepted)}.")
