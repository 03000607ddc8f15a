"""Minimal perturbation per sample: the smallest eps of a grid at which an attack succeeds, and its adversarial."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.attacks.base import predict_labels
from advkeras.attacks.registry import generate
from advkeras.errors import InputError
from advkeras.models.checks import check_images, check_logits

DEFAULT_EPS_GRID = tuple(e / 255 for e in (0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32))


@dataclass
class MinimalAdversarials:
    """Per sample: `eps`, the smallest grid eps at which the attack succeeded (0.0 when the model is
    already wrong, inf when no grid eps works); `x_adv`, the adversarial found at that eps (the clean
    image where eps is 0 or inf); `l2`, the L2 norm of `x_adv - x` (inf where eps is inf)."""

    eps: np.ndarray
    x_adv: np.ndarray
    l2: np.ndarray


def minimal_adversarials(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, attack: str = "pgd", *,
                         eps_grid: Sequence[float] = DEFAULT_EPS_GRID, backend: str | None = None, seed: int = 0,
                         progress: bool = True, target: np.ndarray | None = None, batch_size: int = 128,
                         **params) -> MinimalAdversarials:
    """Per sample, the smallest eps in `eps_grid` at which `attack` succeeds and the adversarial it found.

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
    eps_out = np.where(already, 0.0, np.inf)
    x_adv = x.copy()
    todo = np.flatnonzero(~already)
    for eps in tqdm(grid, desc=f"minimal eps ({attack})", unit="eps", disable=not progress):
        if not len(todo):
            break
        res = generate(model, x[todo], y[todo], attack, eps=float(eps), backend=backend, seed=seed,
                       progress=False, batch_size=batch_size,
                       target=None if target is None else wanted[todo], **params)
        broken = todo[res.success]
        eps_out[broken] = eps
        x_adv[broken] = res.clipped[res.success]  # kept, so the L2 needs no second (random-start) run
        todo = todo[~res.success]
    l2 = np.sqrt(((x_adv - x).reshape(len(x), -1).astype(np.float64) ** 2).sum(1))
    return MinimalAdversarials(eps_out, x_adv, np.where(np.isinf(eps_out), np.inf, l2))


def minimal_eps(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, attack: str = "pgd", *,
                eps_grid: Sequence[float] = DEFAULT_EPS_GRID, backend: str | None = None, seed: int = 0,
                progress: bool = True, target: np.ndarray | None = None, batch_size: int = 128,
                **params) -> np.ndarray:
    """Per sample, the smallest eps in `eps_grid` at which `attack` succeeds; np.inf where none does
    (0.0 where the model is already wrong). See `minimal_adversarials` for the adversarials too."""
    return minimal_adversarials(model, x, y, attack, eps_grid=eps_grid, backend=backend, seed=seed,
                                progress=progress, target=target, batch_size=batch_size, **params).eps
