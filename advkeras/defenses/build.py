"""One entry point over the defenses, by the names the CLI and the assessment config use."""
from __future__ import annotations

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
    if name not in DEFENSES:
        raise InputError(f"unknown defense {name!r}; choose one of: {', '.join(DEFENSES)}.")
    return DEFENSES[name](model, train, val, seed=seed, **params)
