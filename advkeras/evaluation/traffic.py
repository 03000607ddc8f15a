"""Query-traffic simulation: benign users and attack processes querying a model defended by prediction similarity.

Benign users each look at one patient's slide: they send patches one at a time, most often a spatial
neighbour of a patch they already sent (neighbouring patches look alike, which is what makes benign
traffic hard), otherwise another patch of the same patient, never the same patch twice; the other benign
workloads (`evaluation.workloads`) add re-opened, re-scanned, panned and shared patches. Attack processes
each try to turn one correctly classified held-out patch into an adversarial example by running an
attack *through* the defended model (`as_user`): every model call of the attack is a query, so the
defense sees it and, with action="flip", answers falsely. Attacks of one kind run as one batch (row i =
process i, its own user id); batches are inserted at seeded random points of the benign stream. Attackers
with a `strategy` (`evaluation.attackers`) flush the history, change ids or blind their queries.
"""
from __future__ import annotations

import os
import re
import time
import traceback
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.attacks import generate
from advkeras.attacks.base import predict_labels
from advkeras.data.dataset import Dataset
from advkeras.defenses.prediction_similarity import (as_user, build_defended_model, calibrate_threshold, query,
                                                     similarity_layer)
from advkeras.errors import AdvKerasError, InputError, NoStartingPointError
from advkeras.evaluation.attackers import Strategy, attacker_model
from advkeras.evaluation.workloads import benign_workload
from advkeras.models.layers import Jitter

# Small enough for `advkeras assess` (well under a minute on 2 cores); the script runs larger ones.
DEFAULT_ATTACKS: list[dict[str, Any]] = [
    {"name": "bim", "backend": "foolbox", "eps": 8 / 255},
    {"name": "pgd", "backend": "foolbox", "eps": 8 / 255, "params": {"steps": 10, "rel_stepsize": 0.25}},
    {"name": "boundary", "targeted": True, "params": {"steps": 20}},
    {"name": "hopskipjump", "targeted": True, "params": {"steps": 2, "initial_gradient_eval_steps": 20}},
    {"name": "bim", "backend": "foolbox", "eps": 8 / 255, "label": "bim+jitter",
     "jitter": {"noise": 16 / 255, "max_shift": 2}},
    # attackers who work around the detector (evaluation.attackers): more cover queries than the ring store
    # holds, a new id per query, every blinding transform
    {"name": "bim", "backend": "foolbox", "eps": 8 / 255, "label": "bim, flush 40", "strategy": {"flush": 40}},
    {"name": "bim", "backend": "foolbox", "eps": 8 / 255, "label": "bim, new id per query",
     "strategy": {"new_id_every": 1}},
    {"name": "bim", "backend": "foolbox", "eps": 8 / 255, "label": "bim, blind: all",
     "strategy": {"blind": ["brightness", "contrast", "colour", "orientation", "shift", "noise"]}},
]


def slide_positions(ds: Dataset) -> np.ndarray | None:
    """(x, y) slide coordinates of each patch from Kaggle IDC file names (`..._x1001_y1051_...`), if known."""
    files = ds.meta.get("files")
    if files is None:
        return None
    files = np.asarray(files)
    if len(files) != len(ds) and ds.groups is not None and ds.name == "idc":
        # Dataset.subset keeps the parent's file list: recover this split's rows (whole patients, in order).
        from advkeras.data import load_sample

        full = load_sample("idc")
        rows = np.isin(full.groups, np.unique(ds.groups))
        if rows.sum() != len(ds) or not np.array_equal(full.x[rows][:4], ds.x[:4]):
            return None
        files = files[rows]
    if len(files) != len(ds):
        return None
    found = [re.search(r"_x(\d+)_y(\d+)", str(f)) for f in files]
    if not all(found):
        return None
    return np.array([[int(m.group(1)), int(m.group(2))] for m in found])


def benign_sessions(ds: Dataset, n_users: int, queries_per_user: int, *, neighbour_prob: float = 0.7,
                    seed: int = 0, prefix: str = "user", disjoint: bool = False) -> dict[str, np.ndarray]:
    """User id -> indices into `ds` of the patches that user sends, in order (no patch twice per user).

    Each user picks a patient (group); with probability `neighbour_prob` the next patch is the nearest
    unsent patch to the last one on the slide (when coordinates are known), else a random unsent patch.
    `disjoint`: no patch is sent by two users (for scope="global", where users are compared with each other).
    """
    rng = np.random.default_rng(seed)
    groups = ds.groups if ds.groups is not None else np.zeros(len(ds), dtype=int)
    pos = slide_positions(ds)
    names = [g for g in np.unique(groups) if (groups == g).sum() >= queries_per_user]
    if not names:
        raise InputError(f"no patient has {queries_per_user} patches; lower queries_per_user.")
    sessions = {}
    shared = {g: list(np.flatnonzero(groups == g)) for g in names}
    for u in range(n_users):
        if disjoint:
            left = [g for g in names if len(shared[g]) >= queries_per_user]
            if not left:
                raise InputError(f"only {len(sessions)} users can get {queries_per_user} patches no other user "
                                 "sends; lower n_users or queries_per_user.")
            pool = shared[left[rng.integers(len(left))]]
        else:
            pool = list(shared[names[rng.integers(len(names))]])
        sent = [pool.pop(rng.integers(len(pool)))]
        while len(sent) < queries_per_user:
            if pos is not None and rng.random() < neighbour_prob:
                d = np.abs(pos[pool] - pos[sent[-1]]).max(axis=1)
                pick = int(np.argmin(d + rng.random(len(d))))  # nearest, ties broken at random
            else:
                pick = int(rng.integers(len(pool)))
            sent.append(pool.pop(pick))
        sessions[f"{prefix}-{u:04d}"] = np.array(sent)
    return sessions


def _attack_label(spec: dict) -> str:
    return spec.get("label") or spec["name"]


def simulate_traffic(defended: tf.keras.Model, classifier: tf.keras.Model, ds: Dataset,
                     sessions: dict[str, np.ndarray], attacks: list[dict], *, processes: int = 4, seed: int = 0,
                     progress: bool = True) -> dict[str, Any]:
    """Replay benign sessions (user id -> indices into `ds`, or the images themselves) and attack processes
    through `defended` (state reset first); per-attack and benign-user results, benign also per workload (the
    part of a user id before its last "-"). Attacks use `processes` correctly classified images of `ds` each."""
    layer = similarity_layer(defended)
    layer.reset_state(keep_threshold=True)
    rng = np.random.default_rng(seed)
    correct = np.flatnonzero(predict_labels(classifier, ds.x) == ds.y)
    if len(correct) == 0:
        raise InputError("the classifier gets no image of this set right; there is nothing to attack.")
    images = {u: ds.x[s] if np.asarray(s).ndim == 1 else np.asarray(s, np.float32) for u, s in sessions.items()}
    # Attacks target patches no benign user opens: with the cross-user scope, a benign user who opens a patch
    # under attack is matched with the attacker's queries (an alarm on that content, not a false one).
    seen = {x.tobytes() for xs in images.values() for x in xs}
    correct = np.array([i for i in correct if ds.x[i].tobytes() not in seen], dtype=int)
    if len(correct) == 0:
        raise InputError("every correctly classified image is also sent by a benign user; use fewer benign users "
                         "or a larger evaluation set.")
    benign_events = [(u, x[j:j + 1]) for j in range(max(len(x) for x in images.values()))
                     for u, x in images.items() if j < len(x)]
    slots = np.sort(rng.integers(0, len(benign_events) + 1, len(attacks)))
    flagged = {u: 0 for u in sessions}
    latency: list[float] = []  # seconds of each benign query (the defended model end to end)
    rows, start, b = [], time.perf_counter(), 0
    bar = tqdm(total=len(benign_events) + len(attacks), desc="traffic", unit="event", disable=not progress,
               leave=False)
    pool = correct
    for k, spec in enumerate(attacks):
        b = _send_benign(defended, benign_events, b, slots[k], flagged, bar, latency)
        # each attack on images no earlier attack used (else the cross-user scope sees the earlier attack's
        # queries and credits the later attack with its detection), while enough are left
        pool = pool if len(pool) >= processes * max(1, len(np.unique(ds.y))) else correct
        idx = _pick_images(rng, pool, ds.y, processes)
        pool = np.setdiff1d(pool, idx)
        rows.append(_run_attack_processes(defended, classifier, ds, spec, idx, k, seed))
        bar.update(1)
    _send_benign(defended, benign_events, b, len(benign_events), flagged, bar, latency)
    bar.close()
    benign_seconds = time.perf_counter() - start - sum(r["seconds"] for r in rows)
    return {"attacks": rows, "benign": {**_flag_rates(flagged, len(benign_events)), "seconds": benign_seconds,
                                        "ms_per_query_median": _median_ms(latency),
                                        "workloads": _per_workload(flagged, images)},
            "queries_total": int(layer.queries.numpy()), "seconds": time.perf_counter() - start}


def _median_ms(seconds: list[float]) -> float | None:
    """Median in ms, without the first call (it traces the compiled query function)."""
    return 1e3 * float(np.median(seconds[1:] or seconds)) if seconds else None


def _flag_rates(flagged: dict[str, int], n_queries: int) -> dict[str, Any]:
    alarms = np.array(list(flagged.values()))
    return {"users": len(flagged), "queries": n_queries, "users_flagged": int((alarms > 0).sum()),
            "user_fpr": float((alarms > 0).mean()) if len(alarms) else None,
            "query_fpr": float(alarms.sum() / max(n_queries, 1))}


def _per_workload(flagged: dict[str, int], images: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    kinds = sorted({u.rsplit("-", 1)[0] for u in flagged})
    return {kind: _flag_rates({u: a for u, a in flagged.items() if u.rsplit("-", 1)[0] == kind},
                              sum(len(x) for u, x in images.items() if u.rsplit("-", 1)[0] == kind))
            for kind in kinds}


def _pick_images(rng: np.random.Generator, correct: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """`n` correctly classified images, classes taking turns (targeted decision-based attacks start from an
    image of the batch in the target class, so every class must be present)."""
    pools = [list(rng.permutation(correct[y[correct] == c])) for c in np.unique(y[correct])]
    picked = [pool.pop() for i in range(n * len(pools)) for pool in [pools[i % len(pools)]] if pool]
    return np.array(picked[:n])


def _targets(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per image, the label of the next image of the batch with another label (so a start image exists)."""
    out = (y + 1) % n_classes
    for i in range(len(y)):
        other = [y[(i + j) % len(y)] for j in range(1, len(y)) if y[(i + j) % len(y)] != y[i]]
        if other:
            out[i] = other[0]
    return out


def _send_benign(defended, events, begin, end, flagged, bar, latency) -> int:
    for user, x in events[begin:end]:
        t = time.perf_counter()
        flagged[user] += int(query(defended, x, user)["alarm"][0])
        latency.append(time.perf_counter() - t)
        bar.update(1)
    return max(begin, end)


def _run_attack_processes(defended, classifier, ds, spec, idx, k, seed) -> dict[str, Any]:
    label, start = _attack_label(spec), time.perf_counter()
    ids = [f"attacker-{k}-{label}-{p}" for p in range(len(idx))]
    if "strategy" in spec:  # an attacker who works around the detector (evaluation.attackers)
        cover = np.delete(ds.x, idx, axis=0)  # benign patches, never the attacked ones
        model = attacker_model(defended, ids, Strategy.from_spec(spec["strategy"]), cover=cover, seed=seed + k)
    else:
        jitter = Jitter(**{"seed": seed, **spec["jitter"]}) if spec.get("jitter") else None
        model = as_user(defended, ids, rotate_ids=bool(spec.get("rotate_ids")), transform=jitter)
    x, y = ds.x[idx], ds.y[idx]
    # Decision-based attacks run targeted at the next class: their untargeted start (uniform noise) often
    # finds no adversarial start at all on a 2-class model; targeted, they start from a batch image.
    target = _targets(y, int(classifier.output_shape[-1])) if spec.get("targeted") else None
    error = None
    try:
        res = generate(model, x, y, spec["name"], eps=spec.get("eps"), backend=spec.get("backend"),
                       target=target, batch_size=len(idx), seed=seed + k, progress=False, **spec.get("params", {}))
        final, seen = res.clipped, float(res.success.mean())
    except (AssertionError, ValueError) as exc:
        # foolbox gives up when falsified answers contradict each other (e.g. HopSkipJump asserts its start
        # is adversarial); the attacker then holds no adversarial example for the whole batch. So does a
        # decision-based attacker facing a model that puts nothing in the target class (a collapsed model).
        # Anything else (a misspelt attack, a bad parameter) is the caller's error and must not shrink the sample.
        if not (foolbox_gave_up(exc) or isinstance(exc, NoStartingPointError)):
            raise
        error, final, seen = f"{type(exc).__name__}: {exc}"[:200], x, 0.0
    stats = model.get_layer("as_user").process_stats()
    ran = stats["queries"] > 0  # a batch the attack refused to start sent nothing: no process to detect
    detected = stats["alarms"] > 0
    pred = predict_labels(classifier, final)
    true_success = pred != y if target is None else pred == target
    size = (final - x).reshape(len(x), -1)
    # Minimisation attacks (Boundary, HopSkipJump) always hold an adversarial (their start is one); it counts
    # only within an L2 budget, by default that of a full +-8/255 sign perturbation (same as the Linf attacks).
    budget = spec.get("l2_budget", 8 / 255 * np.sqrt(size.shape[1]))
    within = (np.abs(size).max(1) <= spec["eps"] + 1e-6) if spec.get("eps") else np.linalg.norm(size, axis=1) <= budget
    first = stats["first_alarm"][detected]
    paid = {"median_cover_queries": float(np.median(stats["cover"])), "median_ids": float(np.median(stats["ids"])),
            "strategy": Strategy.from_spec(spec["strategy"]).summary()} if "cover" in stats else {}
    return {"attack": label, "processes": int(ran.sum()), "detected": int(detected.sum()), **paid,
            "detection_rate": float(detected[ran].mean()) if ran.any() else None,
            "median_queries_to_first_alarm": float(np.median(first)) if len(first) else None,
            "median_queries": float(np.median(stats["queries"])),
            "success_true": float((true_success & within).mean()), "success_any_size": float(true_success.mean()),
            "success_seen_by_attacker": seen, "error": error,
            "budget": {"linf": spec["eps"]} if spec.get("eps") else {"l2": float(budget)},
            "first_alarm": stats["first_alarm"].tolist(), "queries": stats["queries"].tolist(),
            "seconds": time.perf_counter() - start}


def evaluate_prediction_similarity(classifier: tf.keras.Model, calibration: Dataset, evaluation: Dataset, *,
                                   layer: dict | None = None, target_fpr: float = 0.01, n_benign: int = 20,
                                   queries_per_user: int = 8, n_calibration_users: int | None = None,
                                   attacks: list[dict] | None = None, processes: int = 4,
                                   actions: tuple[str, ...] = ("flag", "flip"), disjoint_users: bool = False,
                                   workloads: tuple[str, ...] = ("browse",),
                                   calibration_workloads: tuple[str, ...] | None = None, seed: int = 0,
                                   progress: bool = True) -> dict[str, Any]:
    """Calibrate the threshold on benign sessions of `calibration` (other patients), then simulate traffic
    on `evaluation` once per action (flag = the answer unchanged, flip = alarmed queries answered falsely).
    `disjoint_users`: no two benign users send the same patch (use it with scope="global"). `workloads`
    (`evaluation.workloads.WORKLOADS`): `n_benign` users of each, in calibration and evaluation alike; the
    benign false-alarm rate is reported per workload. `calibration_workloads` (default: the same) lets the
    thresholds be set on other traffic than the one evaluated."""
    layer = dict(layer or {})
    if layer.get("store") == "ring":
        layer.setdefault("n_slots", 1024)
    attacks = DEFAULT_ATTACKS if attacks is None else attacks
    calib_sessions = _sessions(calibration, tuple(calibration_workloads or workloads), n_calibration_users or n_benign,
                               queries_per_user, seed + 1, "calibration", disjoint_users)
    sessions = _sessions(evaluation, workloads, n_benign, queries_per_user, seed, None, disjoint_users)
    out: dict[str, Any] = {"layer": layer, "target_fpr": target_fpr, "seed": seed, "workloads": list(workloads),
                           "calibration_workloads": list(calibration_workloads or workloads), "runs": {}}
    for action in actions:
        defended = build_defended_model(classifier, action=action, **layer)
        if "calibration" not in out:
            images = {u: calibration.x[s] if np.asarray(s).ndim == 1 else s for u, s in calib_sessions.items()}
            out["calibration"] = calibrate_threshold(defended, images, target_fpr=target_fpr,
                                                     progress=progress).summary()
        sim = similarity_layer(defended)
        sim.threshold.assign(out["calibration"]["threshold"])
        if out["calibration"].get("global_threshold") is not None:
            sim.global_threshold.assign(out["calibration"]["global_threshold"])
        # flip changes what the attacker is told, not what the detector sees: the attackers who work around the
        # detector (a strategy) are measured once, with flag, unless flag is not run
        todo = attacks if action == "flag" or "flag" not in actions else [a for a in attacks if "strategy" not in a]
        out["runs"][action] = simulate_traffic(defended, classifier, evaluation, sessions, todo,
                                               processes=processes, seed=seed, progress=progress)
    out["summary"] = summarize(out)
    return out


def _sessions(ds: Dataset, workloads: tuple[str, ...], n: int, queries: int, seed: int, prefix: str | None,
              disjoint: bool) -> dict[str, np.ndarray]:
    """Benign sessions: indices into `ds` for plain browsing (as before workloads existed), else images."""
    if tuple(workloads) == ("browse",):
        return benign_sessions(ds, n, queries, seed=seed, prefix=prefix or "user", disjoint=disjoint)
    out: dict[str, np.ndarray] = {}
    for j, kind in enumerate(workloads):
        name = kind if prefix is None else f"{prefix}:{kind}"
        out.update(benign_workload(ds, kind, n, queries, seed=seed + 7 * j, prefix=name))
    return out


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers: detection over all attack processes, benign users flagged, success flip off vs on."""
    summary = {}
    for action, run in result["runs"].items():
        n = sum(r["processes"] for r in run["attacks"])
        det = sum(r["detected"] for r in run["attacks"])
        firsts = [f for r in run["attacks"] for f in r["first_alarm"] if f > 0]
        summary[action] = {"processes": n, "detected": det, "detection_rate": det / n if n else None,
                           "median_queries_to_first_alarm": float(np.median(firsts)) if firsts else None,
                           "benign_user_fpr": run["benign"]["user_fpr"],
                           "benign_user_fpr_by_workload": {k: v["user_fpr"]
                                                           for k, v in run["benign"].get("workloads", {}).items()},
                           "attack_success_true": {r["attack"]: r["success_true"] for r in run["attacks"]}}
    return summary


def foolbox_gave_up(exc: BaseException) -> bool:
    """Whether `exc` is one of foolbox's own aborts of a decision-based attack: "init_attack failed for k of n
    inputs" (no adversarial start found) or an assertion inside foolbox that its points are still adversarial."""
    if isinstance(exc, AdvKerasError):
        return False
    if isinstance(exc, ValueError):
        return str(exc).startswith("init_attack failed")
    frames = traceback.extract_tb(exc.__traceback__)
    return isinstance(exc, AssertionError) and bool(frames) and f"{os.sep}foolbox{os.sep}" in frames[-1].filename
