"""Seeded global random state for the length of one library call, restored afterwards.

foolbox and ART draw their randomness from global generators (foolbox's random starts from TF's
global seed, its Boundary attack from numpy's; ART from numpy's), so an attack through them is
deterministic only when those are seeded. Library code must not leave the caller's generators
reseeded, though (DESIGN.md, "Evaluating honestly"): `seeded_globals` seeds Python's `random`,
numpy's global generator and TF's global seed for the call and puts all three back as it found them.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context


@contextmanager
def seeded_globals(seed: int) -> Iterator[None]:
    """Seed Python's, numpy's and TF's global random state with `seed` inside the block; restore on exit.

    TF keeps, besides the global seed, a generator of per-op seeds that `tf.random.set_seed` restarts;
    its state is restored too, so the caller's next unseeded random op draws what it would have drawn.
    (Setting the seed also clears TF's kernel cache, as any `tf.random.set_seed` does; that cannot be undone.)
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    tf_seed, tf_ops = context.global_seed(), _op_seed_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    tf.random.set_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        tf.random.set_seed(tf_seed)
        _restore_op_seed_state(tf_ops)


def _op_seed_state() -> tuple | None:
    """State of the eager context's per-op seed generator (a private `random.Random`), None when unset."""
    rng = getattr(context.context(), "_rng", None)
    return rng.getstate() if isinstance(rng, random.Random) else None


def _restore_op_seed_state(state: tuple | None) -> None:
    rng = getattr(context.context(), "_rng", None)
    if state is not None and isinstance(rng, random.Random):
        rng.setstate(state)
