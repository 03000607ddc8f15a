"""Native attacks and their evaluation under a `tf.distribute` strategy: several GPUs of one machine
(MirroredStrategy) or several machines (MultiWorkerMirroredStrategy, configured by TF_CONFIG).

The attacked set is padded to whole global batches and dealt row by row to the strategy's input pipelines
(one per worker), each batched per replica; every replica attacks its batch and predicts the clean and
adversarial images, and the per-image results are gathered (`strategy.gather`) to every worker with the
row numbers that put them back in the set's order. Padding rows carry row number -1 and are dropped.

A result does not depend on how the set was dealt: the random start of image i is drawn from the key
(seed, i), not from its batch, so one process, two GPUs or two machines give the same adversarials
(the steps are the same ops on the same image; see tests/attacks/test_distributed.py). Without a random
start (FGSM, BIM) the adversarials are those of `generate(..., backend="native")`.

foolbox and ART attacks drive the model from Python and are not strategy-aware: they split over processes
by shard instead (`advkeras.attacks.sharded`), which also runs these attacks shard by shard, resumably.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from typing import Callable

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.attacks.base import PerModelCache, quiet_tracing
from advkeras.attacks.native import NativeLinfIterative, _restarted_steps, _signed_steps
from advkeras.attacks.registry import get_attack
from advkeras.attacks.result import AttackResult
from advkeras.data.files import is_lazy
from advkeras.errors import InputError
from advkeras.models.checks import check_logits

STRATEGIES = ("default", "mirrored", "multiworker")
_MAX_RESTARTS = 1 << 16  # restart r of image i draws from key (seed, i * _MAX_RESTARTS + r)
_STEPS = PerModelCache()  # model -> {(strategy, attack, params, batch): compiled distributed step}


def make_strategy(kind: str) -> tf.distribute.Strategy:
    """The strategy named `kind`: "default" (this process, one device), "mirrored" (every local GPU, else the
    CPU) or "multiworker" (the machines of TF_CONFIG; create it before any other TensorFlow work)."""
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise InputError("--strategy multiworker needs TF_CONFIG, e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
                             "[\"host0:2222\", \"host1:2222\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}' "
                             "on each machine (its own index).")
        from advkeras.attacks.sharded import worker_from_tf_config

        worker_from_tf_config()  # a clear error for a TF_CONFIG that is not a cluster spec
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise InputError(f"unknown strategy {kind!r}; choose one of: {', '.join(STRATEGIES)}.")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the results (worker 0 of a multi-worker strategy; always, otherwise)."""
    return bool(strategy.extended.should_checkpoint)


def agree(strategy: tf.distribute.Strategy, chief_values: np.ndarray, *, ok: bool = True,
          key: float = 0.0) -> tuple[np.ndarray, bool, bool]:
    """One collective every worker calls: (the chief's `chief_values` on every worker, whether every worker
    said `ok`, whether every worker gave the same `key`).

    A worker whose own checks failed still takes part (ok=False) and raises afterwards, so the others raise too
    instead of waiting in a collective it never joins. float32 throughout: GPU collectives refuse int32, and
    values are 0/1 flags and keys below 2**24, exact in float32.
    """
    row = np.concatenate([np.asarray(chief_values, np.float32).reshape(-1), [1.0 if ok else 0.0, key]])
    value = tf.constant(row[None], tf.float32)
    rows = strategy.gather(strategy.run(tf.function(lambda: tf.identity(value))), axis=0).numpy()
    return rows[0, :-2], bool((rows[:, -2] == 1).all()), bool((rows[:, -1] == rows[0, -1]).all())


def data_key(x, y: np.ndarray) -> float:
    """A 24-bit fingerprint of the attacked set (its size, labels and, for files, paths): workers that loaded
    different data would deal different rows under the same numbers."""
    digest = hashlib.sha256(np.asarray(y, np.int64).tobytes())
    digest.update(str(len(y)).encode())
    if is_lazy(x):
        digest.update("\n".join(map(str, x.paths)).encode())
    return float(int.from_bytes(digest.digest()[:3], "big"))


def chief_view(strategy: tf.distribute.Strategy, shards: list[int], n_shards: int, *, ok: bool = True,
               key: float = 0.0) -> list[int]:
    """`shards` as the chief sees them, on every worker (see `agree`), so workers that do not share the chief's
    folder (or looked at it a moment earlier) still agree on what is left to do. Raises on every worker when
    one was not `ok` or the workers' data keys differ."""
    mask = np.zeros(n_shards, np.float32)
    mask[list(shards)] = 1
    chief, all_ok, same_key = agree(strategy, mask, ok=ok, key=key)
    if not all_ok:
        raise InputError("a worker of the strategy refused the run (its own message says why); fix it and rerun the "
                         "same command on every worker.")
    if not same_key:
        raise InputError("the workers of the strategy hold different data (size, labels or file list); give every "
                         "worker the same --data, -n/--all-images and --seed.")
    return [int(k) for k in np.flatnonzero(chief)]


def distributed_attack(model: tf.keras.Model, x, y: np.ndarray, attack: str = "pgd", *, eps: float,
                       strategy: tf.distribute.Strategy | None = None, batch_size: int = 64, seed: int = 0,
                       progress: bool = True, **params) -> AttackResult:
    """A native Linf attack (fgsm, bim, pgd; `params` as for `generate`) of (x, y) under `strategy`.

    `batch_size` is per replica (smaller when the set is: padding costs compute, and the results do not
    depend on batches). Every worker gets the whole result, in the order of x. `x` may be an array or an
    `ImageFiles` index (each pipeline then decodes only its own rows). Untargeted only. Load or build the model
    under `strategy.scope()` so that its variables are copied to every device (`advkeras attack --strategy`
    does); a model made outside works too: its replicas read the variables from the device that holds them,
    and under MultiWorkerMirroredStrategy each worker uses its own copy (the same when all load one file).
    """
    strategy = strategy or tf.distribute.get_strategy()
    spec, y = _checked(model, x, y, attack, eps, batch_size, params)
    start = time.perf_counter()
    out = attack_rows(model, x, y, spec, eps, strategy=strategy, batch_size=batch_size, seed=seed, progress=progress)
    return as_result(spec, eps, x, y, out, time.perf_counter() - start)


def as_result(spec: NativeLinfIterative, eps: float, x, y: np.ndarray, out: dict, seconds: float) -> AttackResult:
    """The AttackResult of `attack_rows` outputs `out` for (x, y)."""
    # The clean images are not gathered (half the traffic): each worker has them, or decodes them, itself.
    x = np.asarray(x, np.float32)
    keys = {"random_start_keys": "per image"} if spec.params["random_start"] else {}
    return AttackResult(spec.name, "native", eps, x, y, out["x_adv"], out["x_adv"], out["adv"] != y, out["clean"],
                        out["adv"], seconds=seconds, params={**spec.params, **keys}, norm=spec.norm)


def attack_rows(model: tf.keras.Model, x, y: np.ndarray, spec: NativeLinfIterative, eps: float, *,
                strategy: tf.distribute.Strategy, batch_size: int, seed: int, progress: bool = True) -> dict:
    """The gathered per-image outputs of `spec` on (x, y) (checked by the caller): adversarials (`x_adv`) and
    predicted classes before (`clean`) and after (`adv`), in the order of x."""
    step = _attack_step(model, strategy, spec)
    return _run(strategy, step, x, y, batch_size, (tf.constant(eps, tf.float32), tf.constant(seed, tf.int64)),
                progress, f"{spec.name} (native, {strategy.num_replicas_in_sync} replicas)")


def _checked(model, x, y, attack: str, eps: float, batch_size: int, params: dict):
    """The attack object and int64 labels, after the checks `generate` makes (images in [0, 1], labels in range,
    eps): a bad row would otherwise fail on one worker only, leaving the others waiting in a collective."""
    spec = get_attack(attack, "native", **params)
    if not isinstance(spec, NativeLinfIterative):  # pragma: no cover - the native backend holds only these
        raise InputError(f"{attack} has no native implementation to distribute.")
    y = _check_inputs(model, x, y, batch_size)
    # Files are checked as they are decoded (PNG pixels are in [0, 1] by construction): a stand-in of their shape.
    images = np.broadcast_to(np.zeros((1, *x.shape[1:]), np.float32), x.shape) if is_lazy(x) else x
    spec._check(model, images, y, eps, None)  # noqa: SLF001 - the attack's own input checks
    return spec, y


def distributed_predict(model: tf.keras.Model, x, *, strategy: tf.distribute.Strategy | None = None,
                        batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """Predicted class ids of x (array or `ImageFiles`) under `strategy`, gathered in order on every worker:
    the evaluation loop of an assessment (e.g. held-out accuracy) spread over devices and machines."""
    strategy = strategy or tf.distribute.get_strategy()
    y = np.zeros(len(x), np.int64)
    _check_inputs(model, x, y, batch_size)

    def build(ref):
        @tf.function
        def step(iterator):
            def replica(idx, images, _):
                return {"idx": idx, "clean": tf.argmax(ref()(images, training=False), 1)}
            return _gather(strategy, strategy.run(replica, args=next(iterator)))
        return quiet_tracing(step)

    step = _STEPS.get(model, (id(strategy), "predict"), build)
    return _run(strategy, lambda it, *_: step(it), x, y, batch_size, (), progress, "predict")["clean"]


def _attack_step(model: tf.keras.Model, strategy: tf.distribute.Strategy, spec: NativeLinfIterative) -> Callable:
    """One compiled step: each replica attacks its batch; the results are gathered. Cached per model, strategy
    and attack parameters, since tracing the many-step graph costs more than running it (the batch dimension
    is free: one trace serves every batch size)."""
    p = {"loss": "ce", "restarts": 1, **spec.params}
    if p["restarts"] > _MAX_RESTARTS:
        raise InputError(f"restarts={p['restarts']} is more than the {_MAX_RESTARTS} a distributed attack draws keys for.")

    def build(ref):
        @tf.function
        def step(iterator, eps, seed):
            def replica(idx, x, y):
                net = ref()
                start = (lambda r: _per_image_start(x, eps, seed, idx, r)) if p["random_start"] else (lambda r: x)
                if p["restarts"] > 1:
                    x_adv = _restarted_steps(net, x, y, 1.0, eps, start, p)
                else:
                    x_adv = _signed_steps(net, x, start(tf.constant(0, tf.int64)), y, 1.0, eps, p["steps"],
                                          p["rel_stepsize"] * eps, p["loss"])
                return {"idx": idx, "x_adv": x_adv, "clean": tf.argmax(net(x, training=False), 1),
                        "adv": tf.argmax(net(x_adv, training=False), 1)}
            return _gather(strategy, strategy.run(replica, args=next(iterator)))
        return quiet_tracing(step)

    key = (id(strategy), spec.name, tuple(sorted(spec.params.items())))
    return _STEPS.get(model, key, build)


def _per_image_start(x: tf.Tensor, eps: tf.Tensor, seed: tf.Tensor, idx: tf.Tensor, r) -> tf.Tensor:
    """Random start of each image from its own key (seed, row * _MAX_RESTARTS + r): the same wherever the row is
    attacked, in whichever batch, on whichever replica."""
    keys = tf.stack([tf.fill(tf.shape(idx), seed), idx * _MAX_RESTARTS + tf.cast(r, tf.int64)], axis=1)
    noise = tf.map_fn(lambda k: tf.random.stateless_uniform(tf.shape(x)[1:], k, -1.0, 1.0), keys,
                      fn_output_signature=tf.float32)
    return tf.clip_by_value(x + noise * eps, 0.0, 1.0)


def _gather(strategy: tf.distribute.Strategy, per_replica: dict) -> dict:
    return {k: strategy.gather(v, axis=0) for k, v in per_replica.items()}


def _run(strategy, step, x, y: np.ndarray, batch_size: int, args: tuple, progress: bool, desc: str) -> dict:
    """Every global batch through `step`; the gathered outputs put back in row order, padding dropped."""
    n = len(y)
    batch_size = min(batch_size, math.ceil(n / strategy.num_replicas_in_sync))  # no more padding than needed
    global_batch = batch_size * strategy.num_replicas_in_sync
    steps = math.ceil(n / global_batch)
    iterator = iter(strategy.distribute_datasets_from_function(_pipeline(x, y, steps * global_batch, global_batch)))
    out: dict[str, np.ndarray] = {}
    seen = np.zeros(n, np.int64)
    bar = tqdm(range(steps), desc=desc, unit="batch", disable=not progress or not is_chief(strategy), leave=False)
    for _ in bar:
        got = {k: v.numpy() for k, v in step(iterator, *args).items()}
        idx = got.pop("idx")
        rows = idx[idx >= 0]
        np.add.at(seen, rows, 1)
        for k, v in got.items():
            if k not in out:
                out[k] = np.empty((n, *v.shape[1:]), v.dtype)
            out[k][rows] = v[idx >= 0]
    if not (seen == 1).all():  # a lost or repeated row would leave uninitialised values in the results
        raise RuntimeError(f"{int((seen == 0).sum())} rows were not gathered and {int((seen > 1).sum())} more than "
                           "once; this is a bug, please report it with the strategy and set size.")
    return out


def _pipeline(x, y: np.ndarray, n_padded: int, global_batch: int) -> Callable:
    """The dataset function of `distribute_datasets_from_function`: rows dealt one by one to the input pipelines
    (so every pipeline gets the same number of whole per-replica batches), each row (row number, image, label),
    padding rows (-1, zeros, 0). Rows are dealt before they are decoded: a pipeline reads only its own files."""
    n = len(y)
    image_shape = tuple(x.shape[1:])
    zeros = tf.zeros(image_shape, tf.float32)
    numbers = np.concatenate([np.arange(n, dtype=np.int64), np.full(n_padded - n, -1, np.int64)])
    labels = np.concatenate([np.asarray(y, np.int64), np.zeros(n_padded - n, np.int64)])
    if is_lazy(x):
        decode = x.decoder()
        rows = tf.data.Dataset.from_tensor_slices((numbers, np.concatenate([x.paths, [""] * (n_padded - n)]), labels))
        image = lambda i, path: tf.cond(i >= 0, lambda: decode(path), lambda: zeros)  # noqa: E731
    else:
        images = np.asarray(x, np.float32)
        rows = tf.data.Dataset.from_tensor_slices((numbers, np.arange(n_padded, dtype=np.int64), labels))
        image = lambda i, _: tf.cond(i >= 0, lambda: tf.gather(images, i), lambda: zeros)  # noqa: E731

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF  # dealt here
        mine = rows.shard(context.num_input_pipelines, context.input_pipeline_id)
        mine = mine.map(lambda i, item, label: (i, image(i, item), label), num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
        return mine.batch(context.get_per_replica_batch_size(global_batch)).prefetch(2).with_options(options)

    return dataset_fn


def _check_inputs(model: tf.keras.Model, x, y, batch_size: int) -> np.ndarray:
    check_logits(model)
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1 (images per replica), got {batch_size}.")
    shape = tuple(np.shape(x)) if not is_lazy(x) else x.shape
    if not shape or shape[0] == 0:
        raise InputError("no images to attack or predict; pass at least one.")
    if len(shape) != 4 or shape[1:] != tuple(model.input_shape[1:]):
        raise InputError(f"images of shape {shape[1:]} do not fit the model, which takes {tuple(model.input_shape[1:])} "
                         "(float32 in [0, 1], channels last).")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != shape[0] or y.dtype.kind not in "iu":
        raise InputError(f"labels must be a 1-D integer array with one label per image; got shape {y.shape}, dtype "
                         f"{y.dtype} for {shape[0]} images.")
    return y.astype(np.int64)
