"""Reproducibility without global state: seeded weights and random layers, op determinism, and a guard
that hands the caller's global random generators back as they were.

Same seed, same machine, same numbers (DESIGN.md, "Evaluating honestly"), and library code never
reseeds the caller's global random state. So nothing here calls `tf.random.set_seed` or
`tf.keras.utils.set_random_seed`: every random draw of a model gets its own seed, derived from the
caller's seed and the variable's or layer's place in the model.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import random
from typing import Iterator

import numpy as np
import tensorflow as tf

from advkeras.errors import ModelError

log = logging.getLogger(__name__)


def derive_seed(seed: int, *names: object) -> int:
    """A 31-bit seed from `seed` and `names`, stable across processes and machines (unlike `hash()`),
    so each variable, layer or pipeline draws from its own stream."""
    digest = hashlib.sha256(":".join(map(str, (int(seed), *names))).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def fresh_seed() -> int:
    """A seed from the operating system, for callers who gave none; it leaves every global generator alone."""
    return random.SystemRandom().randrange(2**31)


def deterministic_ops(enabled: bool = True) -> bool:
    """Turn on TensorFlow's op determinism (`enabled=True`); returns whether it is on.

    Without it, parallel tf.data maps and some kernels (reductions, convolutions' algorithm choice)
    may run in a different order each time, so the same seed can give different weights. It is
    process-wide, and TF 2.14 has no public way to turn it off again: `enabled=False` only leaves
    it as it is (off unless something turned it on before), which is the faster choice. Under it TF
    refuses random ops that have no seed at all, which advkeras code never runs.
    """
    if enabled:
        tf.config.experimental.enable_op_determinism()
    on = op_determinism_enabled()
    if not enabled and on:
        log.warning("op determinism was already turned on in this process and cannot be turned off; "
                    "this run stays deterministic.")
    return on


def op_determinism_enabled() -> bool:
    """Whether op determinism is on in this process."""
    from tensorflow.python.framework import config  # no public getter in TF 2.14

    return bool(config.is_op_determinism_enabled())


@contextlib.contextmanager
def preserved_global_rng() -> Iterator[None]:
    """Give numpy's, Python's, Keras' and TensorFlow's global random state back as it was on exit.

    Keras draws a seed from Python's `random` (or from the generator `tf.keras.utils.set_random_seed`
    installs) for every unseeded initializer or random layer it creates, e.g. in `clone_model`; so
    even fully seeded library code moves the caller's generators unless it restores them. TF's global
    seed and its generator of per-op seeds are put back only when the block changed the seed (setting it
    clears TF's kernel cache, which cannot be undone). Usable as a decorator.
    """
    keras_rng = _keras_seed_generator()
    states = random.getstate(), np.random.get_state(), keras_rng.getstate() if keras_rng else None
    tf_seed, tf_ops = _tf_seed_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        if keras_rng is not None:
            keras_rng.setstate(states[2])
        if _tf_seed_state()[0] != tf_seed:
            tf.random.set_seed(tf_seed)
            _restore_op_seeds(tf_ops)


@contextlib.contextmanager
def seeded_globals(seed: int) -> Iterator[None]:
    """Seed Python's, numpy's and TF's global random state with `seed` inside the block; restore on exit.

    For third-party code that draws only from global generators (foolbox's random starts from TF's
    global seed, its Boundary attack and ART from numpy's): deterministic for a seed, and the caller's
    generators are as they were afterwards, so its next unseeded draw is the one it would have made.
    """
    with preserved_global_rng():
        random.seed(seed)
        np.random.seed(seed % 2**32)
        tf.random.set_seed(seed)
        yield


def _tf_seed_state() -> tuple[int | None, tuple | None]:
    """TF's global seed and the state of the eager context's per-op seed generator (a private Random)."""
    from tensorflow.python.eager import context  # no public getter in TF 2.14

    rng = getattr(context.context(), "_rng", None)
    return context.global_seed(), rng.getstate() if isinstance(rng, random.Random) else None


def _restore_op_seeds(state: tuple | None) -> None:
    from tensorflow.python.eager import context

    rng = getattr(context.context(), "_rng", None)
    if state is not None and isinstance(rng, random.Random):
        rng.setstate(state)


def _keras_seed_generator() -> random.Random | None:
    try:
        from keras.src.backend import _SEED_GENERATOR
    except ImportError:  # another Keras layout: nothing to restore beyond Python's and numpy's generators
        return None
    return getattr(_SEED_GENERATOR, "generator", None)


def seed_weights(model: tf.keras.layers.Layer, seed: int) -> tf.keras.layers.Layer:
    """Re-initialise every variable of a freshly built `model` from a seeded copy of its layer's own
    initializer, and seed its random layers (`seed_random_layers`); returns `model`.

    Keras seeds unseeded initializers from a global generator, so the initial weights of a new model
    depended on whatever ran before; after this they depend only on `seed` and each variable's place
    in the model (its layer's position, e.g. ``1/3`` for the fourth layer of the second part, and its
    name, e.g. ``kernel``), not on Keras' automatic layer names, which change with every model built in
    a process. Never call it on pretrained weights: they are overwritten.
    """
    for path, layer in _walk(model):
        for var in _own_variables(layer):
            _reinitialise(layer, var, seed, path)
    return seed_random_layers(model, seed)


def seed_random_layers(model: tf.keras.layers.Layer, seed: int) -> tf.keras.layers.Layer:
    """Give Dropout and every other random layer of `model` its own seed (derived from `seed` and its
    position); returns `model`. Weights are left untouched, so it suits copies of trained models.

    An unseeded Dropout draws its masks from TF's global seed, which advkeras never sets; under op
    determinism TF refuses to run it at all.
    """
    for path, layer in _walk(model):
        rng = getattr(layer, "_random_generator", None)  # keras BaseRandomLayer's backend.RandomGenerator
        if rng is None or not hasattr(rng, "_maybe_init"):
            continue
        layer_seed = derive_seed(seed, path, "rng")
        if hasattr(layer, "seed"):
            layer.seed = layer_seed  # what get_config saves and clone_model copies
        rng._seed, rng._built = layer_seed, False
        rng._maybe_init()
    return model


def _walk(layer: tf.keras.layers.Layer, path: str = "") -> Iterator[tuple[str, tf.keras.layers.Layer]]:
    """(path, layer) for `layer` and every layer inside it, nested models included, depth first; the
    path is made of positions ("", "1", "1/3", ...), which are the same for the same architecture."""
    yield path, layer
    for i, child in enumerate(layer._flatten_layers(include_self=False, recursive=False)):
        yield from _walk(child, f"{path}/{i}" if path else str(i))


def _own_variables(layer: tf.keras.layers.Layer) -> list[tf.Variable]:
    inner = {id(v) for child in layer._flatten_layers(include_self=False, recursive=False) for v in child.weights}
    return [v for v in layer.weights if id(v) not in inner]


def _reinitialise(layer: tf.keras.layers.Layer, var: tf.Variable, seed: int, path: str) -> None:
    name = var.name.rsplit("/", 1)[-1].split(":")[0]  # "kernel", "bias", "depthwise_kernel", "gamma", ...
    init = _initializer_of(layer, name)
    if init is None:
        if var.trainable:
            raise ModelError(f"cannot seed variable {var.name}: layer {layer.name!r} has no {name}_initializer; "
                             "build the model from standard Keras layers or seed this layer yourself.")
        return  # a state (counts, statistics) set by the layer itself, not drawn at random
    config = init.get_config()
    if "seed" in config:  # constant initializers (zeros, ones) draw nothing
        init = type(init).from_config({**config, "seed": derive_seed(seed, path, name)})
    var.assign(init(var.shape, dtype=var.dtype))


def _initializer_of(layer: tf.keras.layers.Layer, name: str) -> tf.keras.initializers.Initializer | None:
    # kernel -> kernel_initializer; depthwise_kernel -> depthwise_initializer; recurrent_kernel -> recurrent_...
    for attr in (f"{name}_initializer", f"{name.removesuffix('_kernel')}_initializer"):
        init = getattr(layer, attr, None)
        if init is not None:
            return tf.keras.initializers.get(init)
    return None
