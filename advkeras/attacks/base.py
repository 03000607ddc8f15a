"""The shared attack base: input checks, batching, progress bar, success computed one way for all."""
from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable, Hashable

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.attacks.result import AttackResult
from advkeras.errors import InputError
from advkeras.models.checks import check_images, check_logits


class Attack:
    """Base class. Subclasses set `name`, `backend`, the flags below, and implement `run_batch`.

    Parameters are keyword-only, as in foolbox; `__repr__` shows them.
    """

    name = "attack"
    backend = "native"
    norm = "linf"
    targeted_ok = True
    eps_required = True  # False for minimisation attacks (DeepFool, CW, Boundary, ...)
    counts_queries = False

    def __init__(self, **params: Any):
        self.params = params

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    def run_batch(self, model: tf.keras.Model, x: np.ndarray, y: np.ndarray, eps: float | None,
                  target: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Return (raw, clipped, queries or None) for one batch."""
        raise NotImplementedError

    def _check(self, model: tf.keras.Model, x: np.ndarray, y: np.ndarray, eps: float | None,
               target: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        check_logits(model)
        x = check_images(x, model)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
            raise InputError(f"labels must be a 1-D integer array with one label per image; got shape {y.shape}, "
                             f"dtype {y.dtype} for {len(x)} images.")
        n_classes = int(model.output_shape[-1])
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise InputError(f"labels must be class ids in [0, {n_classes - 1}], got [{y.min()}, {y.max()}].")
        if eps is None and self.eps_required:
            raise InputError(f"{self.name} needs eps (the perturbation budget in [0, 1] units).")
        if eps is not None:
            _check_eps(self.name, self.norm, eps, int(np.prod(x.shape[1:])))
        if target is not None:
            if not self.targeted_ok:
                raise InputError(f"{self.name} is untargeted only; call it without target.")
            target = np.asarray(target)
            if target.shape != y.shape or (target == y).any():
                raise InputError("target must give one class per image, different from its label "
                                 "(e.g. (y + 1) % n_classes).")
        return x, y.astype(np.int64)

    def __call__(self, model: tf.keras.Model, x: np.ndarray, y: np.ndarray, *, eps: float | None = None,
                 target: np.ndarray | None = None, batch_size: int = 128, seed: int = 0,
                 progress: bool = True) -> AttackResult:
        x, y = self._check(model, x, y, eps, target)
        raws, clips, queries = [], [], []
        start = time.perf_counter()
        for i in tqdm(range(0, len(x), batch_size), desc=f"{self.name} ({self.backend})", disable=not progress,
                      unit="batch", leave=False):
            sl = slice(i, i + batch_size)
            raw, clipped, q = self.run_batch(model, x[sl], y[sl], eps,
                                             None if target is None else np.asarray(target)[sl], seed + i)
            raws.append(raw)
            clips.append(np.clip(clipped, 0.0, 1.0).astype(np.float32))
            queries.append(q)
        seconds = time.perf_counter() - start
        raw = np.concatenate(raws) if raws else x.copy()
        clipped = np.concatenate(clips) if clips else x.copy()
        pred_clean = predict_labels(model, x, batch_size)
        pred_adv = predict_labels(model, clipped, batch_size)
        success = pred_adv != y if target is None else pred_adv == np.asarray(target)
        return AttackResult(self.name, self.backend, eps, x, y, raw, clipped, success, pred_clean, pred_adv,
                            None if target is None else np.asarray(target),
                            np.concatenate(queries) if queries and queries[0] is not None else None,
                            seconds, dict(self.params), self.norm)


def _check_eps(name: str, norm: str, eps: float, dim: int) -> None:
    """eps is a budget in the attack's norm, for images in [0, 1]."""
    if norm == "l0":
        raise InputError(f"{name} changes few pixels (an L0 attack) and takes no eps; call it with eps=None "
                         "and bound it with its own parameters.")
    top = 1.0 if norm == "linf" else float(np.sqrt(dim))
    if not (0 < eps <= top):
        hint = "8/255 = 0.031 for Linf" if norm == "linf" else f"0.5 to 2 for L2 on images of {dim} values"
        raise InputError(f"eps={eps} is out of range: images are in [0, 1], so an {norm.upper()} eps for {name} "
                         f"must be in (0, {top:.4g}] (e.g. {hint}).")


class PerModelCache:
    """Compiled functions per model, held weakly and thread-safely.

    A function built here gets a weak reference to its model (the traced graph keeps only the variables),
    so deleting the model frees its graphs; two models used alternately each keep theirs.
    """

    def __init__(self) -> None:
        self._entries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, model: tf.keras.Model, key: Hashable, build: Callable[[weakref.ref], Any]) -> Any:
        """The function cached for (model, key), built as `build(weakref.ref(model))` the first time."""
        with self._lock:
            entry = self._entries.setdefault(model, {})
            if key not in entry:
                entry[key] = build(weakref.ref(model))
            return entry[key]

    def __contains__(self, model: tf.keras.Model) -> bool:
        with self._lock:
            return model in self._entries


_FORWARD = PerModelCache()


def image_spec(model: tf.keras.Model) -> tf.TensorSpec:
    """A batch of any size of the model's images: one trace serves every batch."""
    return tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)


def compiled_forward(model: tf.keras.Model):
    """The model's inference-mode forward pass as one `tf.function`, traced once per model.

    Backends that drive the model from Python (foolbox, ART) call this instead of `model(x)`: it skips
    Keras' per-call overhead and stays differentiable under a GradientTape.
    """
    def build(ref):
        return quiet_tracing(tf.function(lambda x: ref()(x, training=False), input_signature=[image_spec(model)]))
    return _FORWARD.get(model, "forward", build)


def quiet_tracing(fn):
    """Silence TF's "triggered tf.function retracing" warning for a function built per model: with its input
    signature each traces once, but TF counts the traces of every closure of one piece of code together, so
    attacking five models reads as retracing."""
    fn._omit_frequent_tracing_warning = True  # noqa: SLF001 (no public switch in TF 2.14)
    return fn


def predict_labels(model: tf.keras.Model, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Predicted class ids, batch by batch, in inference mode."""
    return np.concatenate([np.argmax(model(x[i:i + batch_size], training=False), axis=1)
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros(0, np.int64)
