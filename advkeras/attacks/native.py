"""Compiled Linf attacks in TF ops (FGSM, BIM, PGD).

They run inside `tf.function`, so adversarial training can call them from a Keras `train_step`
and under `tf.distribute`; foolbox is the reference they are tested against. The update rule is
foolbox's: x <- clip_[0,1](clip_eps(x + sign * step * sign(grad loss))). Only stateless random ops
are used, so the attacks run (and repeat exactly) under `tf.config.experimental.enable_op_determinism()`.

Full strength by default (DESIGN.md, "Evaluating honestly"): BIM and PGD step 2.5 eps / steps unless
told otherwise; `loss="margin"` keeps a gradient where cross-entropy saturates; PGD takes `restarts`.
"""
from __future__ import annotations

import tensorflow as tf

from advkeras.attacks.base import Attack, PerModelCache, image_spec, quiet_tracing
from advkeras.attacks.steps import rel_stepsize_for
from advkeras.errors import InputError

LOSSES = ("ce", "margin")


def linf_pgd(model: tf.keras.Model, x: tf.Tensor, y: tf.Tensor, eps: float | tf.Tensor, *, steps: int,
             step_size: float | tf.Tensor, random_start: bool, target: tf.Tensor | None = None,
             seed: int | tf.Tensor | None = None, loss: str = "ce") -> tf.Tensor:
    """Iterated signed-gradient attack in the Linf ball of radius eps around x (bounds [0, 1]).

    Pure TF: call it from a `tf.function` or a `train_step`. With `target`, descends the loss of
    the target class instead of ascending that of the label. The random start is stateless, drawn
    from `seed` (0 when None; a tensor such as the optimizer's step counter varies it per batch), so
    it runs under op determinism, where TF refuses unseeded random ops.
    """
    check_loss(loss)
    x0 = tf.convert_to_tensor(x, tf.float32)
    eps = tf.cast(eps, tf.float32)
    classes, sign = (y, 1.0) if target is None else (target, -1.0)
    if random_start:
        key = tf.stack([tf.cast(0 if seed is None else seed, tf.int64), tf.constant(0, tf.int64)])
        x_adv = _random_start(x0, eps, key)
    else:
        x_adv = x0
    x_adv = _signed_steps(model, x0, x_adv, classes, sign, eps, steps, step_size, loss)
    return tf.stop_gradient(x_adv)


def check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise InputError(f"loss={loss!r} is not known; use loss='ce' (cross-entropy) or loss='margin' "
                         "(best other logit minus the true one, which keeps a gradient on confident logits).")


def per_example_loss(logits: tf.Tensor, classes: tf.Tensor, loss: str) -> tf.Tensor:
    """The loss an untargeted attack ascends, one value per image.

    "ce": cross-entropy of `classes`. "margin" (CW/DLR style): max over other classes of the logit
    minus the logit of `classes`; positive exactly when the image is misclassified, and its gradient
    does not vanish when the softmax saturates (float32 cross-entropy has zero gradient once the
    logit gap exceeds ~100). A targeted attack descends the same loss of the target class, which for
    the margin is ascending target logit minus the best other.
    """
    logits = tf.cast(logits, tf.float32)
    if loss == "ce":
        return tf.keras.losses.sparse_categorical_crossentropy(classes, logits, from_logits=True)
    classes = tf.reshape(tf.cast(classes, tf.int32), [-1])  # labels of a train_step may come as (n, 1) or float
    own = tf.one_hot(classes, tf.shape(logits)[1], on_value=True, off_value=False)
    other = tf.reduce_max(tf.where(own, tf.constant(float("-inf")), logits), axis=1)
    return other - tf.reduce_max(tf.where(own, logits, tf.constant(float("-inf"))), axis=1)


def _random_start(x: tf.Tensor, eps: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """A uniform point of the eps ball around x (clipped to [0, 1]), drawn statelessly from `key` (shape [2])."""
    return tf.clip_by_value(x + tf.random.stateless_uniform(tf.shape(x), key, -1.0, 1.0) * eps, 0.0, 1.0)


def _signed_steps(model, x0, x_adv, classes, sign, eps, steps, step_size, loss="ce"):
    """`steps` signed-gradient steps on `loss` of `classes`, projected on the eps ball and [0, 1]."""
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            value = tf.reduce_sum(per_example_loss(model(x_adv, training=False), classes, loss))
        # A part with no gradient (a quantiser's round) gives zero, not None: the attack then stalls,
        # which is what a masked gradient does to it, and BPDA (advkeras.adaptive) is the remedy.
        grad = tape.gradient(value, x_adv, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        x_adv = x_adv + sign * step_size * tf.sign(grad)
        x_adv = tf.clip_by_value(tf.clip_by_value(x_adv, x0 - eps, x0 + eps), 0.0, 1.0)
    return x_adv


def _restarted_steps(model, x0, classes, sign, eps, start_at, p):
    """PGD from `p["restarts"]` random starts (`start_at(r)`: the starting point of restart r); per image, the
    adversarial of the first restart that succeeds, else the one with the highest loss.

    Restart 0 is the single-start attack, so more restarts never lose an image it breaks. A
    `tf.while_loop` keeps the graph at one copy of the steps and stops once every image is broken.
    """
    step = p["rel_stepsize"] * eps

    def outcome(x_adv):
        logits = model(x_adv, training=False)
        won = tf.where(sign > 0, tf.argmax(logits, 1, output_type=classes.dtype) != classes,
                       tf.argmax(logits, 1, output_type=classes.dtype) == classes)
        return won, sign * per_example_loss(logits, classes, p["loss"])

    def body(r, best, best_won, best_loss):
        x_adv = _signed_steps(model, x0, start_at(r), classes, sign, eps, p["steps"], step, p["loss"])
        won, value = outcome(x_adv)
        take = ~best_won & (won | (value > best_loss))
        pick = tf.reshape(take, [-1] + [1] * (len(x0.shape) - 1))
        return r + 1, tf.where(pick, x_adv, best), best_won | won, tf.where(take, value, best_loss)

    n = tf.shape(x0)[0]
    initial = (tf.constant(0, tf.int64), x0, tf.zeros([n], tf.bool), tf.fill([n], float("-inf")))
    out = tf.while_loop(lambda r, _, won, __: (r < p["restarts"]) & ~tf.reduce_all(won), body, initial,
                        maximum_iterations=p["restarts"])
    return out[1]


_TRACES = PerModelCache()  # model -> {(class, params): compiled attack}


class NativeLinfIterative(Attack):
    """Shared body of the native FGSM/BIM/PGD: one compiled function per model, reused across batches.

    `rel_stepsize=None` takes 2.5 / steps (Madry et al.), so any step count can cross the eps ball;
    the step actually used is what `params` (and so `AttackResult.params`) records.
    """

    backend = "native"
    defaults: dict = {}

    def __init__(self, *, rel_stepsize: float | None = None, steps: int | None = None,
                 random_start: bool | None = None):
        steps = self.defaults["steps"] if steps is None else steps
        rel = self.defaults.get("rel_stepsize") if rel_stepsize is None else rel_stepsize
        params = {"steps": steps, "rel_stepsize": rel_stepsize_for(steps, rel),
                  "random_start": self.defaults["random_start"] if random_start is None else bool(random_start)}
        super().__init__(**params)

    def _function(self, model: tf.keras.Model):
        # Shared across instances: generate() builds a new attack object per call, and tracing a
        # many-step graph costs far more than running it, so reuse the trace for the same model
        # and parameters (eps and the seed are tensor arguments, the batch size is free).
        p = {"loss": "ce", "restarts": 1, **self.params}

        def build(ref):
            signature = [image_spec(model), tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.float32),
                         tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int64)]

            @tf.function(input_signature=signature)
            def attack(x, classes, sign, eps, seed):
                # The seed comes in as a tensor so one trace serves every batch and seed; the random
                # start is drawn in the graph, sparing a numpy round trip of a batch-sized array.
                net = ref()
                if p["restarts"] > 1:
                    return _restarted_steps(net, x, classes, sign, eps,
                                            lambda r: _random_start(x, eps, tf.stack([seed[0], r])), p)
                x_start = _random_start(x, eps, seed) if p["random_start"] else x
                return _signed_steps(net, x, x_start, classes, sign, eps, p["steps"], p["rel_stepsize"] * eps,
                                     p["loss"])
            return quiet_tracing(attack)

        return _TRACES.get(model, (type(self).__name__, tuple(sorted(self.params.items()))), build)

    def run_batch(self, model, x, y, eps, target, seed):
        classes, sign = (y, 1.0) if target is None else (target, -1.0)
        args = (tf.constant(x, tf.float32), tf.constant(classes, tf.int64), tf.constant(sign, tf.float32),
                tf.constant(eps, tf.float32), tf.constant([seed, 0], tf.int64))
        out = self._function(model)(*args).numpy()
        return out, out, None


class NativeFGSM(NativeLinfIterative):
    """Fast Gradient Sign Method (one step of size eps), compiled."""

    name = "fgsm"
    defaults = {"rel_stepsize": 1.0, "steps": 1, "random_start": False}


class NativeBIM(NativeLinfIterative):
    """Basic Iterative Method (Kurakin et al.), compiled: 10 steps of 2.5 eps / steps unless given.

    `loss="margin"` ascends the logit margin instead of the cross-entropy (see `per_example_loss`).
    """

    name = "bim"
    defaults = {"steps": 10, "random_start": False}

    def __init__(self, *, steps: int | None = None, rel_stepsize: float | None = None,
                 random_start: bool | None = None, loss: str = "ce"):
        check_loss(loss)
        super().__init__(steps=steps, rel_stepsize=rel_stepsize, random_start=random_start)
        self.params["loss"] = loss


class NativePGD(NativeLinfIterative):
    """Projected Gradient Descent (Madry et al.) with random start, compiled: 40 steps of 2.5 eps / steps
    unless given.

    `loss="margin"` ascends the logit margin (see `per_example_loss`); `restarts` > 1 runs that many
    random starts, drawn from the seed, and keeps per image the first that succeeds, else the one of
    highest loss.
    """

    name = "pgd"
    defaults = {"steps": 40, "random_start": True}

    def __init__(self, *, steps: int | None = None, rel_stepsize: float | None = None,
                 random_start: bool | None = None, loss: str = "ce", restarts: int = 1):
        check_loss(loss)
        _check_restarts(restarts, self.defaults["random_start"] if random_start is None else random_start)
        super().__init__(steps=steps, rel_stepsize=rel_stepsize, random_start=random_start)
        self.params.update(loss=loss, restarts=int(restarts))


def _check_restarts(restarts, random_start: bool) -> None:
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise InputError(f"restarts={restarts!r} is not valid; give a whole number >= 1 (1: one random start, "
                         "e.g. restarts=5 for five).")
    if restarts > 1 and not random_start:
        raise InputError(f"restarts={restarts} without a random start would repeat the same attack; "
                         "drop restarts or set random_start=True.")
