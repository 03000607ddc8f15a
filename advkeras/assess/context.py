"""State shared by the stages of one assessment run."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tensorflow as tf

from advkeras.attacks.result import AttackResult
from advkeras.data.dataset import Dataset
from advkeras.data.sampling import stratified_subset


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
    figures: dict[str, Any] = field(default_factory=dict)  # name -> {"path", "caption", "section"} or a path
    adversarials: dict[str, Any] = field(default_factory=dict)  # "attack@eps" -> AttackResult
    defended: dict[str, tf.keras.Model] = field(default_factory=dict)  # defense name -> defended model
    checkpoint: Any = None  # advkeras.assess.checkpoint.Checkpoint of the run, or None (nothing saved)

    def finished_attack(self, key: str) -> AttackResult | None:
        """The result of attack `key` ("name@eps") that a killed earlier try of this run saved, else None."""
        return None if self.checkpoint is None else self.checkpoint.load_attack(key)

    def add_attack(self, key: str, result: AttackResult) -> None:
        """Record an attack result, saved at once so that a run killed later in the stage keeps it."""
        self.adversarials[key] = result
        if self.checkpoint is not None:
            self.checkpoint.save_attack(key, result)

    def add_figure(self, section: str, name: str, path: Path, caption: str) -> None:
        """Register a figure file (inside `out`) for the report's `section`."""
        self.figures[f"{section}/{name}"] = {"path": str(Path(path).relative_to(self.out)), "caption": caption,
                                             "section": section}

    def figure_path(self, section: str, filename: str) -> Path:
        """Where a stage should save a figure: out/figures/<section>/<filename>."""
        folder = self.out / "figures" / section
        folder.mkdir(parents=True, exist_ok=True)
        return folder / filename

    def eval_set(self, n: int | None = None) -> Dataset:
        """The held-out images the stages attack and detect on: up to `max_eval` (or `n`, if smaller) drawn
        with the run's seed, stratified by class and spread over patients; the same draw for every stage."""
        n_max = int(self.config.get("max_eval") or len(self.test))
        n = n_max if n is None else min(int(n), n_max)
        return stratified_subset(self.test, n, seed=self.seed).in_memory()

    def fit_set(self, split: Dataset | None) -> Dataset | None:
        """`split` (train or val) in memory for a stage that fits on it, capped at `max_fit` images drawn
        stratified by class over patients, so a data set on disk of any size costs bounded memory."""
        if split is None:
            return None
        return stratified_subset(split, int(self.config.get("max_fit") or len(split)), seed=self.seed).in_memory()
