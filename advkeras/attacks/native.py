"""Compiled Linf attacks in TF ops (FGSM, BIM, PGD).

They run inside `tf.function`, so adversarial training can call them from a Keras `train_step`
and under `tf.distribute`; foolbox is the reference they are tested against. The update rule is
foolbox's: x <- clip_[0,1](clip_eps(x + sign * step * sign(grad CE))).
"""
from __future__ import annotations

import tensorflow as tf

from advkeras.attacks.base import Attack


def linf_pgd(model: tf.keras.Model, x: tf.Tensor, y: tf.Tensor, eps: float | tf.Tensor, *, steps: int,
             step_size: float | tf.Tensor, random_start: bool, target: tf.Tensor | None = None,
             seed: int | None = None) -> tf.Tensor:
    """Iterated signed-gradient attack in the Linf ball of radius eps around x (bounds [0, 1]).

    Pure TF: call it from a `tf.function` or a `train_step`. With `target`, descends the
    cross-entropy of the target class instead of ascending that of the label.
    """
    x0 = tf.convert_to_tensor(x, tf.float32)
    eps = tf.cast(eps, tf.float32)
    classes, sign = (y, 1.0) if target is None else (target, -1.0)
    if random_start:
        noise = tf.random.uniform(tf.shape(x0), -1.0, 1.0, seed=seed) * eps
        x_adv = tf.clip_by_value(x0 + noise, 0.0, 1.0)
    else:
        x_adv = x0
    x_adv = _signed_steps(model, x0, x_adv, classes, sign, eps, steps, step_size)
    return tf.stop_gradient(x_adv)


_TRACES: list = []  # [model, {(class, params): compiled attack}]: one model's graphs at a time (they are large)


class NativeLinfIterative(Attack):
    """Shared body of the native FGSM/BIM/PGD: one compiled function per model, reused across batches."""

    backend = "native"
    defaults: dict = {}

    def __init__(self, *, rel_stepsize: float | None = None, steps: int | None = None,
                 random_start: bool | None = None):
        given = {"rel_stepsize": rel_stepsize, "steps": steps, "random_start": random_start}
        super().__init__(**{k: self.defaults[k] if v is None else v for k, v in given.items()})

    def _function(self, model: tf.keras.Model):
        # Shared across instances: generate() builds a new attack object per call, and tracing a
        # many-step graph costs far more than running it, so reuse the trace for the same model
        # and parameters (eps and the seed are tensor arguments).
        key = (type(self).__name__, tuple(sorted(self.params.items())))
        if not _TRACES or _TRACES[0] is not model:
            _TRACES[:] = [model, {}]
        if key not in _TRACES[1]:
            p = dict(self.params)

            @tf.function(reduce_retracing=True)
            def attack(x, classes, sign, eps, seed):
                # The seed comes in as a tensor so one trace serves every batch and seed; the random
                # start is drawn in the graph, sparing a numpy round trip of a batch-sized array.
                if p["random_start"]:
                    noise = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0)
                    x_start = tf.clip_by_value(x + noise * eps, 0.0, 1.0)
                else:
                    x_start = x
                return _signed_steps(model, x, x_start, classes, sign, eps, p["steps"], p["rel_stepsize"] * eps)

            _TRACES[1][key] = attack
        return _TRACES[1][key]

    def run_batch(self, model, x, y, eps, target, seed):
        classes, sign = (y, 1.0) if target is None else (target, -1.0)
        out = self._function(model)(tf.constant(x), tf.constant(classes), tf.constant(sign),
                                    tf.constant(eps, tf.float32), tf.constant([seed, 0], tf.int64)).numpy()
        return out, out, None


def _signed_steps(model, x0, x_adv, classes, sign, eps, steps, step_size):
    """`steps` signed-gradient steps on the cross-entropy of `classes`, projected on the eps ball and [0, 1]."""
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            logits = model(x_adv, training=False)
            loss = tf.reduce_sum(tf.keras.losses.sparse_categorical_crossentropy(classes, logits, from_logits=True))
        x_adv = x_adv + sign * step_size * tf.sign(tape.gradient(loss, x_adv))
        x_adv = tf.clip_by_value(tf.clip_by_value(x_adv, x0 - eps, x0 + eps), 0.0, 1.0)
    return x_adv


class NativeFGSM(NativeLinfIterative):
    """Fast Gradient Sign Method (one step of size eps), compiled."""

    name = "fgsm"
    defaults = {"rel_stepsize": 1.0, "steps": 1, "random_start": False}


class NativeBIM(NativeLinfIterative):
    """Basic Iterative Method (Kurakin et al.), compiled; foolbox's defaults (10 steps of 0.2 eps)."""

    name = "bim"
    defaults = {"rel_stepsize": 0.2, "steps": 10, "random_start": False}


class NativePGD(NativeLinfIterative):
    """Projected Gradient Descent (Madry et al.) with random start, compiled; foolbox's defaults."""

    name = "pgd"
    defaults = {"rel_stepsize": 0.01 / 0.3, "steps": 40, "random_start": True}
