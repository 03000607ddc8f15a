"""What every defense builder returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf


@dataclass
class DefenseResult:
    """A defended classifier (plain functional Keras model, cnn/dnn parts kept) and how it was made."""

    name: str
    model: tf.keras.Model
    info: dict = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
