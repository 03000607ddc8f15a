"""State shared by the stages of one assessment run."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tensorflow as tf

from advkeras.data.dataset import Dataset


@dataclass
class RunContext:
    """Everything a stage may read; stages add their numbers to `metrics` and figure paths to `figures`."""

    config: dict[str, Any]
    out: Path
    seed: int
    train: Dataset | None = None
    val: Dataset | None = None
    test: Dataset | None = None
    model: tf.keras.Model | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    adversarials: dict[str, Any] = field(default_factory=dict)  # "attack@eps" -> AttackResult

    def eval_set(self) -> Dataset:
        """The held-out images the stages attack and detect on."""
        n = int(self.config.get("max_eval") or len(self.test))
        return self.test if n >= len(self.test) else self.test.subset(slice(0, n))
