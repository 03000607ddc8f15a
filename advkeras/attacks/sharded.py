"""Attacks over many images in shards: split over workers, written atomically, resumed after an interruption.

The images are cut into fixed shards (`shard_size` consecutive rows of the attacked set). Each shard is
attacked with its own seed, derived from the run's seed and the shard number, so its result is the same
whichever worker runs it, however many workers there are and whether the run was interrupted before: worker
`i` of `k` takes shards i, i + k, i + 2k, ... (on one machine with several GPUs, one worker per GPU; on
several machines, one per machine: `worker_from_tf_config` reads the index and count from TF_CONFIG as
tf.distribute does). A shard is written to a temporary file and renamed into place, so a killed worker leaves
either a whole shard or none; a rerun skips the shards already on disk. `merge_shards` joins them, in order,
into one `AttackResult`. Attacks need no communication between images, so no worker waits for another.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.attacks.registry import generate
from advkeras.attacks.result import FIELDS, AttackResult, load_result, save_result, summarise
from advkeras.data.files import is_lazy
from advkeras.errors import InputError
from advkeras.seeding import derive_seed

PLAN = "plan.json"


def shard_slices(n: int, shard_size: int) -> list[slice]:
    """Consecutive row ranges of at most `shard_size` covering 0..n."""
    if shard_size < 1:
        raise InputError(f"shard_size must be at least 1, got {shard_size}.")
    return [slice(a, min(a + shard_size, n)) for a in range(0, n, shard_size)]


def worker_from_tf_config(env: str | None = None) -> tuple[int, int]:
    """(index, count) of this worker from a TF_CONFIG JSON (as MultiWorkerMirroredStrategy reads it); (0, 1)
    when it is unset."""
    raw = os.environ.get("TF_CONFIG") if env is None else env
    if not raw:
        return 0, 1
    try:
        cfg = json.loads(raw)
        workers = cfg["cluster"]["worker"]
        task = cfg["task"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"TF_CONFIG is not a tf.distribute cluster spec ({exc}); expected "
                         '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}.') from exc
    if task.get("type", "worker") != "worker":
        raise InputError(f"TF_CONFIG task type {task.get('type')!r}: sharded attacks run on workers only.")
    return int(task.get("index", 0)), len(workers)


def run_shards(model: tf.keras.Model, x, y: np.ndarray, attack: str, out_dir: str | Path, *,
               shard_size: int = 256, worker: int = 0, workers: int = 1, seed: int = 0,
               plan: dict | None = None, progress: bool = True, strategy: tf.distribute.Strategy | None = None,
               prepare: Callable[[], None] | None = None, **attack_kwargs) -> list[int]:
    """Attack this worker's shards of (x, y) that are not on disk yet; returns the shard numbers it wrote.

    `x` may be an array or an `ImageFiles` index (then only one shard is decoded at a time). `plan` (what the
    run is: model, data, attack, parameters) is stored with the shards; a rerun with another plan is refused
    instead of mixing shards of two runs. `attack_kwargs` go to `generate` (eps, backend, params...).
    `prepare`, if given, runs first (e.g. clearing `out_dir`).

    With a `strategy` (a native attack only), the workers of the strategy attack every shard the chief has not
    written together (`distributed_attack`) and the chief writes them; the other workers never touch `out_dir`.
    """
    if not 0 <= worker < workers:
        raise InputError(f"worker index {worker} is outside 0..{workers - 1}; give --worker below --workers.")
    slices = shard_slices(len(y), shard_size)
    # Shards of a strategy run draw each image's random start from its own key, not from its batch: never mixed.
    plan = {**(plan or {}), "attack": attack, "n": int(len(y)), "shard_size": shard_size, "seed": seed,
            "shards": len(slices), **({"strategy": True} if strategy is not None else {})}
    if strategy is not None:
        return _run_distributed(model, x, y, Path(out_dir) / "shards", slices, plan, strategy, workers=workers,
                                progress=progress, prepare=prepare, attack_kwargs=attack_kwargs)
    if prepare is not None:
        prepare()
    folder = _open(Path(out_dir) / "shards", plan)
    mine = [k for k in range(worker, len(slices), workers) if not _shard_path(folder, k).exists()]
    written = []
    for k in tqdm(mine, desc=f"{attack} shards (worker {worker}/{workers})", unit="shard", disable=not progress):
        sl = slices[k]
        res = generate(model, np.asarray(x[sl]), np.asarray(y[sl]), attack, seed=derive_seed(seed, "shard", k),
                       progress=False, **attack_kwargs)
        save_result(res, _shard_path(folder, k))  # atomic: a whole shard or none
        written.append(k)
    return written


def _open(folder: Path, plan: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _check_plan(folder, plan)
    return folder


def _run_distributed(model, x, y, folder: Path, slices: list[slice], plan: dict, strategy: tf.distribute.Strategy,
                     *, workers: int, progress: bool, prepare: Callable[[], None] | None,
                     attack_kwargs: dict) -> list[int]:
    """Every shard the chief misses, attacked by all workers of `strategy`, written by the chief.

    A worker's own checks (and the chief's folder) are settled before the first collective, and their outcome
    shared with every worker (`chief_view`): one worker refusing must not leave the others waiting."""
    from advkeras.attacks.distributed import _checked, as_result, attack_rows, chief_view, data_key, is_chief

    kwargs = dict(attack_kwargs)
    chief, missing, problem = is_chief(strategy), [], None
    try:
        if workers != 1:
            raise InputError("under a tf.distribute strategy every worker takes part in every shard; drop --worker "
                             "and --workers (the strategy's TF_CONFIG says who the workers are).")
        if kwargs.pop("backend", None) not in (None, "native") or kwargs.pop("target", None) is not None:
            raise InputError("a tf.distribute strategy runs the native attacks (fgsm, bim, pgd), untargeted; for "
                             "foolbox or ART attacks, or a targeted attack, drop --strategy and split by "
                             "--worker/--workers.")
        eps, batch_size = kwargs.pop("eps", None), kwargs.pop("batch_size", 64)
        spec, y = _checked(model, x, y, plan["attack"], eps, batch_size, kwargs)
        if chief:
            if prepare is not None:
                prepare()
            _open(folder, plan)
            missing = [k for k in range(len(slices)) if not _shard_path(folder, k).exists()]
    except (InputError, OSError) as exc:
        problem = exc
    try:
        todo = chief_view(strategy, missing, len(slices), ok=problem is None, key=data_key(x, y))
    except InputError:
        if problem is not None:
            raise problem from None  # this worker's own reason rather than "a worker refused"
        raise
    for k in tqdm(todo, desc=f"{plan['attack']} shards ({strategy.num_replicas_in_sync} replicas)", unit="shard",
                  disable=not progress or not chief):
        sl = slices[k]
        part = x.select(sl) if is_lazy(x) else np.asarray(x[sl])
        start = time.perf_counter()
        out = attack_rows(model, part, y[sl], spec, eps, strategy=strategy, batch_size=batch_size,
                          seed=derive_seed(plan["seed"], "shard", k), progress=False)
        if chief:  # the others took part in the same collectives, without decoding the shard or keeping a result
            save_result(as_result(spec, eps, part, y[sl], out, time.perf_counter() - start), _shard_path(folder, k))
    return todo if chief else []


def missing_shards(out_dir: str | Path) -> list[int]:
    """Shard numbers of the run in `out_dir` not written yet."""
    folder = Path(out_dir) / "shards"
    plan = _read_plan(folder)
    return [k for k in range(plan["shards"]) if not _shard_path(folder, k).exists()]


def merge_shards(out_dir: str | Path) -> AttackResult:
    """All shards of the run in `out_dir`, in order, as one AttackResult; refuses while any is missing."""
    folder, plan = _finished(out_dir)
    parts = [load_result(_shard_path(folder, k)) for k in range(plan["shards"])]
    first = parts[0]
    joined: dict[str, Any] = {}
    for f in FIELDS:
        values = [getattr(p, f) for p in parts]
        joined[f] = None if any(v is None for v in values) else np.concatenate(values)
    return AttackResult(first.attack, first.backend, first.eps, norm=first.norm, params=first.params,
                        seconds=float(sum(p.seconds for p in parts)), **joined)


def merge_per_image(out_dir: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """The per-image numbers of every shard (no images: see `AttackResult.per_image`), in order, and the summary
    of the whole run; reads one shard at a time, so it takes memory for the numbers only, however many images."""
    folder, plan = _finished(out_dir)
    parts, seconds = [], 0.0
    for k in range(plan["shards"]):
        res = load_result(_shard_path(folder, k))
        parts.append(res.per_image())
        seconds += res.seconds
    joined = {f: np.concatenate([p[f] for p in parts]) for f in parts[0]}
    summary = summarise(joined, attack=res.attack, backend=res.backend, norm=res.norm, eps=res.eps, seconds=seconds,
                        params=res.params)
    return joined, summary


def _finished(out_dir: str | Path) -> tuple[Path, dict]:
    """The shard folder and plan of a run whose shards are all written; refuses while any is missing."""
    folder = Path(out_dir) / "shards"
    plan = _read_plan(folder)
    missing = missing_shards(out_dir)
    if missing:
        raise InputError(f"{len(missing)} of {plan['shards']} shards are not done yet (e.g. {missing[:5]}); run the "
                         "missing workers again (finished shards are kept) before merging.")
    return folder, plan


def _shard_path(folder: Path, k: int) -> Path:
    return folder / f"shard_{k:06d}.npz"


def _check_plan(folder: Path, plan: dict) -> None:
    plan = json.loads(json.dumps(plan, default=str))  # as stored, so the comparison is like with like
    path = folder / PLAN
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != plan:
            diff = sorted(k for k in set(stored) | set(plan) if stored.get(k) != plan.get(k))
            raise InputError(f"{folder} holds shards of another run (it differs in: {', '.join(diff)}); use another "
                             "--out, or remove that folder to start again.")
        return
    tmp = path.with_name(f".{PLAN}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(plan, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _read_plan(folder: Path) -> dict:
    path = folder / PLAN
    if not path.exists():
        raise InputError(f"{folder.parent} holds no sharded attack run ({PLAN} is missing); start one with "
                         "`advkeras attack --shard-size N`.")
    return json.loads(path.read_text())


def shard_sequence(values: Sequence[int]) -> str:
    """'0-3, 7' for [0, 1, 2, 3, 7]: shard numbers as a short text for messages."""
    out, run = [], []
    for v in sorted(values):
        if run and v != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(v)
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)
