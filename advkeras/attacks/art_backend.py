"""Attacks run through ART 1.19.2 (adversarial-robustness-toolbox), for what foolbox 3 lacks.

ART is an optional extra (`pip install advkeras[bench]`): it is imported only when one of these
attacks runs. The model goes to ART as a `TensorFlowV2Classifier` over its compiled forward pass,
wrapped to count queries. Defaults are kept small enough for 64 images on two CPU cores.
"""
from __future__ import annotations

import contextlib
import logging
import warnings

import numpy as np
import tensorflow as tf

from advkeras.attacks.base import Attack
from advkeras.attacks.foolbox_backend import QueryCounter
from advkeras.seeding import seeded_globals
from advkeras.attacks.steps import rel_stepsize_for
from advkeras.errors import InputError


def import_art():
    """The `art` package, or a clear error naming the extra that installs it."""
    try:
        with warnings.catch_warnings(), _logging_kept():  # ART warns on import that PyTorch is missing: fine here
            warnings.simplefilter("ignore", UserWarning)
            import art  # noqa: F401
            import art.attacks.evasion
            import art.estimators.classification
    except ImportError as exc:
        raise InputError("this attack runs through ART (adversarial-robustness-toolbox 1.19.2), which is not "
                         "installed; install the extra with: pip install advkeras[bench]") from exc
    return art


@contextlib.contextmanager
def _logging_kept():
    """ART's import runs `logging.config.dictConfig`, which closes every handler of the process (the user's log
    files, pytest's capture) and disables every existing logger (advkeras' own). Hide the handlers from it and
    put the loggers back as they were."""
    handlers, named = logging._handlerList[:], dict(logging._handlers)  # noqa: SLF001 (what dictConfig clears)
    loggers = {n: (lg.disabled, lg.level, list(lg.handlers)) for n, lg in logging.Logger.manager.loggerDict.items()
               if isinstance(lg, logging.Logger)}
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    del logging._handlerList[:]  # noqa: SLF001
    try:
        yield
    finally:
        logging._handlerList[:] = handlers + [h for h in logging._handlerList if h not in handlers]  # noqa: SLF001
        logging._handlers.update(named)  # noqa: SLF001
        for n, (disabled, level, hs) in loggers.items():
            lg = logging.getLogger(n)
            lg.disabled, lg.level, lg.handlers = disabled, level, hs
        root.level, root.handlers = root_state


def art_classifier(model: tf.keras.Model, counter: QueryCounter):
    """An ART classifier over `counter` (the model's compiled forward), inputs in [0, 1], logits out."""
    art = import_art()
    return art.estimators.classification.TensorFlowV2Classifier(
        counter, nb_classes=int(model.output_shape[-1]), input_shape=tuple(model.input_shape[1:]),
        loss_object=tf.keras.losses.CategoricalCrossentropy(from_logits=True), clip_values=(0.0, 1.0))


class ArtAttack(Attack):
    """One ART evasion attack; subclasses say how to build it from (classifier, eps, target, params)."""

    backend = "art"

    def build(self, ev, classifier, eps: float | None, targeted: bool, batch_size: int):
        """The ART attack object; `ev` is `art.attacks.evasion`."""
        raise NotImplementedError

    def run_batch(self, model, x, y, eps, target, seed):
        art = import_art()
        # ART draws its randomness from numpy's global generator: seeded for the call (deterministic
        # for a seed), the caller's state put back after.
        with seeded_globals(seed):
            return self._run_batch(art, model, x, y, eps, target)

    def _run_batch(self, art, model, x, y, eps, target):
        counter = QueryCounter(model)
        classifier = art_classifier(model, counter)
        n_classes = int(model.output_shape[-1])
        labels = y if target is None else target
        attack = self.build(art.attacks.evasion, classifier, eps, target is not None, len(x))
        raw = attack.generate(x, y=self.art_labels(labels, n_classes)).astype(np.float32)
        clipped = raw if eps is None else _clip_to_ball(x, raw, eps, self.norm)
        queries = np.full(len(x), counter.count / max(len(x), 1)) if self.counts_queries else None
        return raw, clipped, queries


    def art_labels(self, labels: np.ndarray, n_classes: int) -> np.ndarray | None:
        """Labels (or targets) as ART wants them: one-hot."""
        return np.eye(n_classes, dtype=np.float32)[labels]


def _clip_to_ball(x: np.ndarray, raw: np.ndarray, eps: float, norm: str) -> np.ndarray:
    delta = raw - x
    if norm == "linf":
        return np.clip(x + np.clip(delta, -eps, eps), 0.0, 1.0)
    norms = np.sqrt((delta.reshape(len(x), -1) ** 2).sum(1)).reshape(-1, *[1] * (x.ndim - 1))
    return np.clip(x + delta * np.minimum(1.0, eps / np.maximum(norms, 1e-12)), 0.0, 1.0)


class ArtPGD(ArtAttack):
    """PGD, Linf, random start, through ART (the benchmark peer): 40 steps of 2.5 eps / steps unless
    `rel_stepsize` is given (ART's `eps_step` is `rel_stepsize * eps`), as native and foolbox."""

    name = "pgd"

    def __init__(self, *, steps: int = 40, rel_stepsize: float | None = None, random_start: bool = True):
        super().__init__(steps=steps, rel_stepsize=rel_stepsize_for(steps, rel_stepsize), random_start=random_start)

    def build(self, ev, classifier, eps, targeted, batch_size):
        p = self.params
        return ev.ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=p["rel_stepsize"] * eps,
                                           max_iter=p["steps"], targeted=targeted,
                                           num_random_init=int(p["random_start"]), batch_size=batch_size,
                                           verbose=False)


class ArtJSMA(ArtAttack):
    """Jacobian saliency map attack (Papernot et al.), L0, targeted by nature.

    Without `target` it aims at (label + 1) mod C and counts any misclassification as success.
    Defaults: theta=1.0 (push chosen features to the bound), gamma=0.1 (change at most 10% of them).
    """

    name = "jsma"
    norm = "l0"
    eps_required = False

    def __init__(self, *, theta: float = 1.0, gamma: float = 0.1):
        super().__init__(theta=theta, gamma=gamma)

    def build(self, ev, classifier, eps, targeted, batch_size):
        return ev.SaliencyMapMethod(classifier, theta=self.params["theta"], gamma=self.params["gamma"],
                                    batch_size=batch_size, verbose=False)

    def run_batch(self, model, x, y, eps, target, seed):
        if target is None:  # JSMA needs a target class; the next one is paper 3's choice
            return super().run_batch(model, x, y, eps, (y + 1) % int(model.output_shape[-1]), seed)
        return super().run_batch(model, x, y, eps, target, seed)


class ArtOnePixel(ArtAttack):
    """One-pixel attack (Su et al.): differential evolution over `pixels` pixels, L0, counts queries.

    Defaults: 1 pixel, 3 DE iterations (ART: 100); ART evaluates 400 candidates per iteration and image,
    so a run costs about 1,600 queries per image.
    """

    name = "onepixel"
    norm = "l0"
    eps_required = False
    counts_queries = True

    def __init__(self, *, pixels: int = 1, max_iter: int = 3):
        super().__init__(pixels=pixels, max_iter=max_iter)

    def art_labels(self, labels, n_classes):
        # ART's PixelAttack refuses labels for two classes; without labels it attacks the model's own
        # predictions, which for two classes is the same as aiming at the other class.
        return None if n_classes == 2 else super().art_labels(labels, n_classes)

    def build(self, ev, classifier, eps, targeted, batch_size):
        targeted = targeted and classifier.nb_classes > 2
        return ev.PixelAttack(classifier, th=self.params["pixels"], es=1, max_iter=self.params["max_iter"],
                              targeted=targeted, verbose=False)


class ArtSquare(ArtAttack):
    """Square attack (Andriushchenko et al.), score-based, Linf, untargeted; counts queries. Default 100 iterations."""

    name = "square"
    targeted_ok = False
    counts_queries = True

    def __init__(self, *, max_iter: int = 100, p_init: float = 0.8, restarts: int = 1):
        super().__init__(max_iter=max_iter, p_init=p_init, restarts=restarts)

    def build(self, ev, classifier, eps, targeted, batch_size):
        p = self.params
        return ev.SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=p["max_iter"], p_init=p["p_init"],
                               nb_restarts=p["restarts"], batch_size=batch_size, verbose=False)
