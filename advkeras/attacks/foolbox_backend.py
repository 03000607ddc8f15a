"""Attacks run through foolbox 3.3.4 (the reference implementations).

Defaults of the minimisation and decision-based attacks are cut down from foolbox's (which aim at
convergence on a GPU) so that 64 images run in minutes on two CPU cores; raise `steps` for tighter
adversarials. Every default is in the class's `__repr__` and in `AttackResult.params`.
"""
from __future__ import annotations

import inspect

import numpy as np
import tensorflow as tf

from advkeras.attacks.base import Attack, compiled_forward
from advkeras.seeding import seeded_globals
from advkeras.attacks.steps import rel_stepsize_for
from advkeras.errors import InputError, NoStartingPointError


class QueryCounter:
    """Wraps the model (compiled forward) and counts how many images it was asked to classify."""

    def __init__(self, model: tf.keras.Model):
        self.model = model
        self.forward = compiled_forward(model)
        self.count = 0

    def __call__(self, x: tf.Tensor, **_) -> tf.Tensor:
        self.count += int(x.shape[0])
        return self.forward(x)


def _device() -> str:
    # Passing the device spares foolbox its call to the deprecated tf.test.is_gpu_available().
    return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"


class FoolboxAttack(Attack):
    """One foolbox attack class with its keyword parameters."""

    backend = "foolbox"
    fb_class = ""
    needs_starting_points = False  # decision-based attacks need them for targeted runs
    _pool: np.ndarray | None = None

    def __call__(self, model, x, y, **kwargs):
        # Targeted decision-based attacks start from images of the target class, drawn from everything passed.
        self._pool = x if self.needs_starting_points and kwargs.get("target") is not None else None
        try:
            return super().__call__(model, x, y, **kwargs)
        finally:
            self._pool = None

    def _attack(self):
        import foolbox as fb

        return getattr(fb.attacks, self.fb_class)(**self.params)

    def run_batch(self, model, x, y, eps, target, seed):
        import foolbox as fb

        # foolbox draws random starts from TF's global seed and the Boundary attack from numpy's global
        # generator: seeded for the call (deterministic for a seed), the caller's state put back after.
        with seeded_globals(seed):
            return self._run_batch(fb, model, x, y, eps, target)

    def _run_batch(self, fb, model, x, y, eps, target):
        counter = QueryCounter(model)
        fmodel = fb.TensorFlowModel(counter, bounds=(0.0, 1.0), device=_device())
        xt, yt = tf.constant(x), tf.constant(y)
        criterion = (fb.criteria.Misclassification(yt) if target is None
                     else fb.criteria.TargetedMisclassification(tf.constant(target)))
        kwargs = {}
        if target is not None and self.needs_starting_points:
            pool = x if self._pool is None else self._pool
            kwargs["starting_points"] = tf.constant(_starting_points(model, pool, target))
        raw, clipped, _ = self._attack()(fmodel, xt, criterion, epsilons=eps, **kwargs)
        queries = np.full(len(x), counter.count / max(len(x), 1)) if self.counts_queries else None
        return raw.numpy(), clipped.numpy(), queries


def _starting_points(model: tf.keras.Model, pool: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per sample, an image of `pool` that the model puts in its target class (cycling through them)."""
    from advkeras.attacks.base import predict_labels

    pred = predict_labels(model, pool)
    start = np.empty((len(target), *pool.shape[1:]), np.float32)
    for c in np.unique(target):
        found = np.flatnonzero(pred == c)
        if not len(found):
            raise NoStartingPointError(f"a targeted decision-based attack starts from an image of the target class, "
                                       f"but the model puts none of the images passed in class {c}; include some "
                                       "that it does.")
        rows = np.flatnonzero(target == c)
        start[rows] = pool[found[np.arange(len(rows)) % len(found)]]
    return start


def _check_params(name: str, fb_class: str, params: dict) -> None:
    """Refuse parameters foolbox's class does not take, naming those it does (a typo is otherwise a TypeError)."""
    import foolbox as fb

    signature = inspect.signature(getattr(fb.attacks, fb_class).__init__).parameters.values()
    accepted = {v.name for v in signature if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)} - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InputError(f"{name} (foolbox {fb_class}) has no parameter {', '.join(map(repr, unknown))}; it takes: "
                         f"{', '.join(sorted(accepted)) or 'none'}.")


def _foolbox(name: str, fb_class: str, doc: str, *, norm: str = "linf", targeted_ok: bool = True,
             eps_required: bool = True, counts_queries: bool = False, needs_starting_points: bool = False,
             madry_step: bool = False, **defaults) -> type[FoolboxAttack]:
    """Declare a foolbox attack as a small class with keyword defaults.

    `madry_step`: without a step given (`rel_stepsize` or foolbox's `abs_stepsize`), step 2.5 eps / steps
    rather than foolbox's fixed default, so that fewer steps do not silently weaken the attack.
    """

    def __init__(self, **params):
        _check_params(name, fb_class, params)
        params = {**defaults, **params}
        if madry_step and params.get("abs_stepsize") is None:
            params["rel_stepsize"] = rel_stepsize_for(params["steps"], params.get("rel_stepsize"))
        FoolboxAttack.__init__(self, **params)

    return type(f"Foolbox{fb_class}", (FoolboxAttack,), {
        "__init__": __init__, "__doc__": doc, "name": name, "fb_class": fb_class, "norm": norm,
        "targeted_ok": targeted_ok, "eps_required": eps_required, "counts_queries": counts_queries,
        "needs_starting_points": needs_starting_points})


FoolboxFGSM = _foolbox("fgsm", "LinfFastGradientAttack", "FGSM (Goodfellow et al.), Linf.", targeted_ok=True)
FoolboxBIM = _foolbox("bim", "LinfBasicIterativeAttack", "Basic Iterative Method, Linf, 10 steps of 2.5 eps / steps "
                      "unless rel_stepsize is given.", madry_step=True, steps=10)
FoolboxPGD = _foolbox("pgd", "LinfPGD", "PGD with random start, Linf, 40 steps of 2.5 eps / steps unless "
                      "rel_stepsize is given.", madry_step=True, steps=40)
FoolboxFGM = _foolbox("fgm", "L2FastGradientAttack", "Fast gradient method, L2: one step of L2 length eps.",
                      norm="l2")
FoolboxDeepFool = _foolbox(
    "deepfool", "L2DeepFoolAttack", "DeepFool (Moosavi-Dezfooli et al.), L2, untargeted; minimises the norm "
    "(eps=None) or clips to an L2 eps. Defaults: 50 steps, 10 candidate classes, overshoot 0.02.",
    norm="l2", targeted_ok=False, eps_required=False, steps=50, candidates=10, overshoot=0.02)
FoolboxCW = _foolbox(
    "cw", "L2CarliniWagnerAttack", "Carlini-Wagner L2; minimises the norm (eps=None) or clips to an L2 eps. "
    "Defaults cut from foolbox's 9 x 10000 to 5 binary-search steps x 100 Adam steps, initial const 0.01.",
    norm="l2", eps_required=False, binary_search_steps=5, steps=100, stepsize=0.01, confidence=0.0,
    initial_const=0.01)
FoolboxBoundary = _foolbox(
    "boundary", "BoundaryAttack", "Boundary attack (Brendel et al.), decision-based, L2; counts queries. "
    "Default 1000 steps (foolbox: 25000): far from converged (on LeNet/MNIST the L2 distance of the "
    "noise start shrinks about 20 % in 1000 steps); raise steps for tight adversarials.",
    norm="l2", eps_required=False, counts_queries=True, needs_starting_points=True, steps=1000)
FoolboxHopSkipJump = _foolbox(
    "hopskipjump", "HopSkipJumpAttack", "HopSkipJump (Chen et al.), decision-based, L2; counts queries. "
    "Defaults cut to 10 steps, 100 initial and at most 1000 gradient-estimate queries per step (foolbox: 64, 10000).",
    norm="l2", eps_required=False, counts_queries=True, needs_starting_points=True, steps=10,
    initial_gradient_eval_steps=100, max_gradient_eval_steps=1000)
