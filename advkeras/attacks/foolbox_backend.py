"""Attacks run through foolbox 3.3.4 (the reference implementations)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from advkeras.attacks.base import Attack


class _QueryCounter:
    """Wraps the model for foolbox and counts how many images it was asked to classify."""

    def __init__(self, model: tf.keras.Model):
        self.model = model
        self.count = 0

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        self.count += int(x.shape[0])
        return self.model(x, training=False)


def _device() -> str:
    # Passing the device spares foolbox its call to the deprecated tf.test.is_gpu_available().
    return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"


class FoolboxAttack(Attack):
    """One foolbox attack class with its keyword parameters."""

    backend = "foolbox"
    fb_class = ""

    def _attack(self):
        import foolbox as fb

        return getattr(fb.attacks, self.fb_class)(**self.params)

    def run_batch(self, model, x, y, eps, target, seed):
        import foolbox as fb

        tf.random.set_seed(seed)  # foolbox draws random starts from TF's global generator
        counter = _QueryCounter(model)
        fmodel = fb.TensorFlowModel(counter, bounds=(0.0, 1.0), device=_device())
        xt, yt = tf.constant(x), tf.constant(y)
        criterion = (fb.criteria.Misclassification(yt) if target is None
                     else fb.criteria.TargetedMisclassification(tf.constant(target)))
        raw, clipped, _ = self._attack()(fmodel, xt, criterion, epsilons=eps)
        queries = np.full(len(x), counter.count / max(len(x), 1)) if self.counts_queries else None
        return raw.numpy(), clipped.numpy(), queries


def _foolbox(name: str, fb_class: str, doc: str, *, norm: str = "linf", targeted_ok: bool = True,
             eps_required: bool = True, counts_queries: bool = False, **defaults) -> type[FoolboxAttack]:
    """Declare a foolbox attack as a small class with keyword defaults."""

    def __init__(self, **params):
        FoolboxAttack.__init__(self, **{**defaults, **params})

    return type(f"Foolbox{fb_class}", (FoolboxAttack,), {
        "__init__": __init__, "__doc__": doc, "name": name, "fb_class": fb_class, "norm": norm,
        "targeted_ok": targeted_ok, "eps_required": eps_required, "counts_queries": counts_queries})


FoolboxFGSM = _foolbox("fgsm", "LinfFastGradientAttack", "FGSM (Goodfellow et al.), Linf.", targeted_ok=True)
FoolboxBIM = _foolbox("bim", "LinfBasicIterativeAttack", "Basic Iterative Method, Linf, 10 steps of 0.2 eps.")
FoolboxPGD = _foolbox("pgd", "LinfPGD", "PGD with random start, Linf, 40 steps of eps/30.")
