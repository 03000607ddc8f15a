"""Benign query workloads with the near-duplicates real users send, to measure a stateful detector's false alarms.

Each workload is a dict user id -> images in query order (float32, N x H x W x C), users on one patient's
slide each (see `traffic.benign_sessions`):

- `browse`: neighbouring patches, none twice (the traffic the thresholds were first calibrated on);
- `resend`: browsing, and a third of the queries re-opened patches (identical copies, each patch at most twice);
- `rescan`: browsing, and a third of the queries re-scans of patches sent before: another scanner's colour
  (per-channel gain 0.9-1.1, offset +-0.04) and noise (sd 2/255), each patch at most twice;
- `crops`: a viewer panning across neighbouring patches: 50x50 windows every 10 px across two patches that
  touch on the slide (overlapping crops of neighbouring regions);
- `shared`: colleagues reviewing the same case: every user of a group sends the same patches in the same
  order (identical images across user ids; matters for the cross-user scope).
"""
from __future__ import annotations

import numpy as np

from advkeras.data.dataset import Dataset
from advkeras.errors import InputError

WORKLOADS = ("browse", "resend", "rescan", "crops", "shared")


def benign_workload(ds: Dataset, kind: str, n_users: int, queries_per_user: int, *, seed: int = 0,
                    prefix: str | None = None) -> dict[str, np.ndarray]:
    """`n_users` sessions of `queries_per_user` images of the given kind (see the module docstring)."""
    from advkeras.evaluation.traffic import benign_sessions, slide_positions

    if kind not in WORKLOADS:
        raise InputError(f"unknown workload {kind!r}; choose one of {', '.join(WORKLOADS)}.")
    prefix = prefix or kind
    rng = np.random.default_rng(seed)
    if kind == "crops":
        pos = slide_positions(ds)
        if pos is None:
            raise InputError("the crops workload needs slide coordinates (Kaggle IDC file names).")
        return {f"{prefix}-{u:04d}": _panning(ds, pos, queries_per_user, rng) for u in range(n_users)}
    if kind == "shared":
        group = max(2, n_users // 5)  # five colleagues per case
        base = benign_sessions(ds, -(-n_users // group), queries_per_user, seed=seed, prefix=prefix)
        cases = list(base.values())
        return {f"{prefix}-{u:04d}": ds.x[cases[u // group]] for u in range(n_users)}
    fresh = queries_per_user if kind == "browse" else -(-2 * queries_per_user // 3)
    sessions = benign_sessions(ds, n_users, fresh, seed=seed, prefix=prefix)
    return {u: _with_repeats(ds.x[idx], queries_per_user, kind, rng) for u, idx in sessions.items()}


def _with_repeats(x: np.ndarray, n: int, kind: str, rng: np.random.Generator, most: int = 2) -> np.ndarray:
    """The session, with its patches sent again (identical or re-scanned, each at most `most` times) at random
    later points."""
    out = [(i, img) for i, img in enumerate(x)]
    sent_again = np.zeros(len(x), int)
    while len(out) < n and (sent_again < most).any():
        src = int(rng.choice(np.flatnonzero(sent_again < most)))
        first = next(j for j, (i, _) in enumerate(out) if i == src)
        at = int(rng.integers(first + 1, len(out) + 1))
        out.insert(at, (src, x[src] if kind == "resend" else rescan(x[src], rng)))
        sent_again[src] += 1
    return np.stack([img for _, img in out[:n]]).astype(np.float32)


def rescan(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same tissue through another scanner: per-channel gain and offset, sensor noise."""
    c = image.shape[-1]
    out = image * rng.uniform(0.9, 1.1, c) + rng.uniform(-0.04, 0.04, c) + rng.normal(0, 2 / 255, image.shape)
    return np.clip(out, 0, 1).astype(np.float32)


def _panning(ds: Dataset, pos: np.ndarray, n: int, rng: np.random.Generator, step: int = 10) -> np.ndarray:
    """Windows every `step` px across horizontally touching patch pairs of one slide, pair after pair."""
    h, w = ds.x.shape[1:3]
    key = {(int(g), int(p[0]), int(p[1])): i for i, (g, p) in enumerate(zip(_groups(ds), pos))}
    pairs = [(i, key[(g, x + w, y)]) for (g, x, y), i in key.items() if (g, x + w, y) in key]
    if not pairs:
        raise InputError("no two patches touch on a slide; the crops workload needs neighbouring patches.")
    out: list[np.ndarray] = []
    while len(out) < n:
        a, b = pairs[int(rng.integers(len(pairs)))]
        strip = np.concatenate([ds.x[a], ds.x[b]], axis=1)  # h x 2w
        out += [strip[:, o:o + w] for o in range(0, w + 1, step)]
    return np.stack(out[:n]).astype(np.float32)


def _groups(ds: Dataset) -> np.ndarray:
    return ds.groups if ds.groups is not None else np.zeros(len(ds), dtype=int)
