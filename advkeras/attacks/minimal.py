"""Minimal perturbation per sample: the smallest eps of a grid at which an attack succeeds."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.attacks.base import predict_labels
from advkeras.attacks.registry import generate
from advkeras.errors import InputError
from advkeras.models.checks import check_images, check_logits

DEFAULT_EPS_GRID = tuple(e / 255 for e in (0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32))


def minimal_eps(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, attack: str = "pgd", *,
                eps_grid: Sequence[float] = DEFAULT_EPS_GRID, backend: str | None = None, seed: int = 0,
                progress: bool = True, target: np.ndarray | None = None, batch_size: int = 128,
                **params) -> np.ndarray:
    """Per sample, the smallest eps in `eps_grid` at which `attack` succeeds; np.inf where none does.

    The grid is walked in increasing order and each eps attacks only the samples not yet broken,
    so the cost falls as eps grows. Samples the model already gets wrong (or, with `target`,
    already assigns to the target) need no perturbation and get 0.0. `params` go to the attack
    (e.g. steps=20). Compare models by the median or the share of samples below an eps.
    """
    grid = np.sort(np.asarray(list(eps_grid), dtype=np.float64))
    if grid.size == 0 or grid[0] <= 0 or grid[-1] > 1:
        raise InputError(f"eps_grid must hold values in (0, 1], got {list(eps_grid)}; e.g. (2/255, 4/255, 8/255).")
    check_logits(model)
    x, y = check_images(x, model), np.asarray(y)
    wanted = y if target is None else np.asarray(target)
    clean = predict_labels(model, x, batch_size)
    already = clean == wanted if target is not None else clean != wanted
    out = np.where(already, 0.0, np.inf)
    todo = np.flatnonzero(~already)
    for eps in tqdm(grid, desc=f"minimal eps ({attack})", unit="eps", disable=not progress):
        if not len(todo):
            break
        res = generate(model, x[todo], y[todo], attack, eps=float(eps), backend=backend, seed=seed,
                       progress=False, batch_size=batch_size,
                       target=None if target is None else wanted[todo], **params)
        out[todo[res.success]] = eps
        todo = todo[~res.success]
    return out
