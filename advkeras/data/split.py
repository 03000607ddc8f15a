"""Group-wise (patient-wise) train/val/test splits: no group ever appears in two splits."""
from __future__ import annotations

import numpy as np

from advkeras.data.dataset import Dataset
from advkeras.errors import DataError


def split_by_group(ds: Dataset, *, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                   seed: int = 0) -> tuple[Dataset, Dataset, Dataset]:
    """Split `ds` into train/val/test with every group (patient) in exactly one split.

    Groups are placed one by one, largest first (ties broken by the seed), each into the split
    whose per-class quota it fills best, so each split gets close to its share of every class
    when the groups allow it (IDC patients are often single-class).
    """
    if ds.groups is None:
        raise DataError("this dataset has no group (patient) ids; use a loader that returns them "
                        "(load_idc, load_sample('idc')) or split at random with split_random().")
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise DataError(f"fractions must be three non-negative numbers summing to 1, got {fractions}.")
    names, inverse = np.unique(ds.groups, return_inverse=True)
    n_needed = sum(f > 0 for f in fractions)
    if len(names) < n_needed:
        raise DataError(f"only {len(names)} group(s) ({', '.join(map(str, names))}) for {n_needed} "
                        "non-empty splits; add patients or set a fraction to 0.")
    counts = np.zeros((len(names), ds.n_classes))
    np.add.at(counts, (inverse, ds.y), 1)
    target = np.outer(fractions, counts.sum(0))  # splits x classes
    filled = np.zeros_like(target)
    rng = np.random.default_rng(seed)
    order = sorted(range(len(names)), key=lambda g: (-counts[g].sum(), rng.random()))
    assign = np.empty(len(names), dtype=int)
    # Give every non-empty split one group first so none ends up empty.
    for s, g in zip([s for s in range(3) if fractions[s] > 0], order[::-1]):
        assign[g] = s
        filled[s] += counts[g]
    seeded = set(order[::-1][:n_needed])
    for g in order:
        if g in seeded:
            continue
        gain = np.minimum(counts[g], np.maximum(target - filled, 0)).sum(1)
        gain -= 1e-9 * np.maximum(filled - target, 0).sum(1)  # prefer the least over-filled split
        gain[np.asarray(fractions) == 0] = -np.inf
        s = int(np.argmax(gain))
        assign[g] = s
        filled[s] += counts[g]
    parts = tuple(ds.subset(assign[inverse] == s) for s in range(3))
    return parts  # type: ignore[return-value]


def split_random(ds: Dataset, *, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                 seed: int = 0) -> tuple[Dataset, Dataset, Dataset]:
    """Stratified random split for datasets without groups (MNIST, CIFAR-10)."""
    rng = np.random.default_rng(seed)
    idx = [[], [], []]
    for c in np.unique(ds.y):
        members = rng.permutation(np.flatnonzero(ds.y == c))
        cuts = np.round(np.cumsum(fractions)[:2] * len(members)).astype(int)
        for s, part in enumerate(np.split(members, cuts)):
            idx[s].extend(part.tolist())
    return tuple(ds.subset(np.sort(np.array(i, dtype=int))) for i in idx)  # type: ignore[return-value]
