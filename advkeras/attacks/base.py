"""The shared attack base: input checks, batching, progress bar, success computed one way for all."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.attacks.result import AttackResult
from advkeras.errors import InputError
from advkeras.models.checks import check_images, check_logits


class Attack:
    """Base class. Subclasses set `name`, `backend`, the flags below, and implement `run_batch`.

    Parameters are keyword-only, as in foolbox; `__repr__` shows them.
    """

    name = "attack"
    backend = "native"
    norm = "linf"
    targeted_ok = True
    eps_required = True  # False for minimisation attacks (DeepFool, CW, Boundary, ...)
    counts_queries = False

    def __init__(self, **params: Any):
        self.params = params

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    def run_batch(self, model: tf.keras.Model, x: np.ndarray, y: np.ndarray, eps: float | None,
                  target: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Return (raw, clipped, queries or None) for one batch."""
        raise NotImplementedError

    def _check(self, model: tf.keras.Model, x: np.ndarray, y: np.ndarray, eps: float | None,
               target: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        check_logits(model)
        x = check_images(x, model)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
            raise InputError(f"labels must be a 1-D integer array with one label per image; got shape {y.shape}, "
                             f"dtype {y.dtype} for {len(x)} images.")
        n_classes = int(model.output_shape[-1])
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise InputError(f"labels must be class ids in [0, {n_classes - 1}], got [{y.min()}, {y.max()}].")
        if eps is None and self.eps_required:
            raise InputError(f"{self.name} needs eps (the perturbation budget in [0, 1] units).")
        if eps is not None and not (0 < eps <= 1):
            raise InputError(f"eps={eps} is out of range: images are in [0, 1], so eps must be in (0, 1] "
                             "(e.g. 8/255 = 0.031 for Linf).")
        if target is not None:
            if not self.targeted_ok:
                raise InputError(f"{self.name} is untargeted only; call it without target.")
            target = np.asarray(target)
            if target.shape != y.shape or (target == y).any():
                raise InputError("target must give one class per image, different from its label "
                                 "(e.g. (y + 1) % n_classes).")
        return x, y.astype(np.int64)

    def __call__(self, model: tf.keras.Model, x: np.ndarray, y: np.ndarray, *, eps: float | None = None,
                 target: np.ndarray | None = None, batch_size: int = 128, seed: int = 0,
                 progress: bool = True) -> AttackResult:
        x, y = self._check(model, x, y, eps, target)
        raws, clips, queries = [], [], []
        start = time.perf_counter()
        for i in tqdm(range(0, len(x), batch_size), desc=f"{self.name} ({self.backend})", disable=not progress,
                      unit="batch", leave=False):
            sl = slice(i, i + batch_size)
            raw, clipped, q = self.run_batch(model, x[sl], y[sl], eps,
                                             None if target is None else np.asarray(target)[sl], seed + i)
            raws.append(raw)
            clips.append(np.clip(clipped, 0.0, 1.0).astype(np.float32))
            queries.append(q)
        seconds = time.perf_counter() - start
        raw = np.concatenate(raws) if raws else x.copy()
        clipped = np.concatenate(clips) if clips else x.copy()
        pred_clean = predict_labels(model, x, batch_size)
        pred_adv = predict_labels(model, clipped, batch_size)
        success = pred_adv != y if target is None else pred_adv == np.asarray(target)
        return AttackResult(self.name, self.backend, eps, x, y, raw, clipped, success, pred_clean, pred_adv,
                            None if target is None else np.asarray(target),
                            np.concatenate(queries) if queries and queries[0] is not None else None,
                            seconds, dict(self.params))


def predict_labels(model: tf.keras.Model, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Predicted class ids, batch by batch, in inference mode."""
    return np.concatenate([np.argmax(model(x[i:i + batch_size], training=False), axis=1)
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros(0, np.int64)
