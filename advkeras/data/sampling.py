"""Evaluation subsets: seeded, stratified by class and spread over groups (patients), never "the first N".

The held-out set of a patient-wise split is stored patient by patient, so its first N images are often
one patient of one class: a constant predictor looks perfect on them. Every stage that evaluates on
part of a set draws that part here.
"""
from __future__ import annotations

import numpy as np

from advkeras.data.dataset import Dataset
from advkeras.errors import DataError


def class_quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """Images per class for a subset of `n`: proportional to `counts` (largest remainders), at least one
    of each class present, never more than a class has."""
    counts = np.asarray(counts, dtype=int)
    present = counts > 0
    if n >= counts.sum():
        return counts.copy()
    quota = np.zeros_like(counts)
    quota[present] = 1  # every class present keeps a voice, however rare
    left = n - int(quota.sum())
    if left < 0:  # fewer images asked than classes present: the largest classes first
        keep = np.argsort(-counts, kind="stable")[:n]
        quota[:] = 0
        quota[keep] = 1
        return quota
    share = (counts - quota) * left / max(int((counts - quota).sum()), 1)
    extra = np.floor(share).astype(int)
    order = np.argsort(-(share - extra), kind="stable")
    for c in order[: left - int(extra.sum())]:
        extra[c] += 1
    return np.minimum(quota + extra, counts)


def stratified_indices(y: np.ndarray, n: int, *, groups: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Indices of a subset of `n` rows: class shares as in `y`; within a class, groups take turns
    (round robin over the groups in a seeded order, rows drawn at random within each group), so every
    patient with that class contributes before any contributes twice. Sorted, so the subset keeps the
    set's order."""
    y = np.asarray(y)
    if n < 1:
        raise DataError(f"a subset needs at least one image, got n={n}.")
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    groups = np.zeros(len(y), dtype=int) if groups is None else np.asarray(groups)
    classes = np.unique(y)
    quotas = class_quotas(np.array([(y == c).sum() for c in classes]), n)
    chosen: list[int] = []
    for c, quota in zip(classes, quotas):
        members = np.flatnonzero(y == c)
        names = rng.permutation(np.unique(groups[members]))
        queues = [list(rng.permutation(members[groups[members] == g])) for g in names]
        picked: list[int] = []
        while len(picked) < quota:
            for q in queues:
                if q and len(picked) < quota:
                    picked.append(int(q.pop()))
        chosen.extend(picked)
    return np.sort(np.asarray(chosen, dtype=int))


def stratified_subset(ds: Dataset, n: int | None, *, seed: int = 0) -> Dataset:
    """`ds` itself when `n` is None or covers it, else a stratified, group-spread subset of `n` images."""
    if n is None or n >= len(ds):
        return ds
    return ds.subset(stratified_indices(ds.y, int(n), groups=ds.groups, seed=seed))


def composition(ds: Dataset) -> dict:
    """Sizes a table should carry: n, images per class (by name) and per group."""
    counts = np.bincount(ds.y, minlength=ds.n_classes) if len(ds) else np.zeros(ds.n_classes, int)
    per_group = None
    if ds.groups is not None:
        names, n = np.unique(ds.groups, return_counts=True)
        per_group = {str(g): int(k) for g, k in zip(names, n)}
    return {"n": int(len(ds)), "per_class": {name: int(k) for name, k in zip(ds.class_names, counts)},
            "per_group": per_group}
