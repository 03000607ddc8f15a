"""Latency added by prediction similarity per query, at 10^3, 10^4 and 10^5 stored queries.

Measures, in one run and on the same classifier (vgg_mini, IDC 50x50x3):
- bare: the compiled classifier forward (the model the defense wraps);
- ours: the compiled defended model (classifier + PredictionSimilarity, scope="user" and scope="global"),
  and the compiled PredictionSimilarity layer alone on the same images and probabilities (what the defense
  adds; measured directly because on a shared CPU the difference of two model timings is noisy);
- peer: an exhaustive search of every stored thumbnail in numpy (the unbounded design: compare each query
  with all stored queries), timed alone, since it is what the ring buffers replace;
- limit: the compiled forward+backward of the bare classifier (one gradient query of an attack).
Added latency per query = layer time / batch (and, for reference, (defended - bare) / batch).
Writes docs/benchmarks/prediction_similarity.json.

    .venv/bin/python scripts/bench_prediction_similarity.py --seed 0
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from advkeras.data import load_sample  # noqa: E402
from advkeras.defenses.prediction_similarity import build_defended_model, similarity_layer, thumbnail  # noqa: E402
from advkeras.models import build_classifier  # noqa: E402
from advkeras.runs import write_json  # noqa: E402

STORED = (1_000, 10_000, 100_000)
BATCHES = (1, 64)


def timed(fn, reps: int) -> dict:
    fn()  # warm-up (and trace)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * float(np.min(times)), "reps": reps}


def fill(defended, images: np.ndarray, n: int, history: int, rng: np.random.Generator) -> None:
    """Store n queries from n / history users (each user's ring full), through the layer's own call."""
    layer = similarity_layer(defended)
    layer.reset_state()
    probs = tf.nn.softmax(rng.normal(size=(1000, 2)).astype(np.float32))

    @tf.function
    def store(x, ids):
        layer([x, probs[:tf.shape(x)[0]], ids])

    for start in range(0, n, 1000):
        rows = np.arange(start, min(start + 1000, n))
        x = np.clip(images[rows % len(images)] + rng.normal(0, 0.02, (len(rows),) + images.shape[1:]), 0, 1)
        store(tf.constant(x.astype(np.float32)), tf.constant([f"user-{r // history}" for r in rows]))
    assert int(layer.queries.numpy()) == n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/benchmarks/prediction_similarity.json")
    ap.add_argument("--reps", type=int, default=100)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    ds = load_sample("idc")
    clf = build_classifier("vgg_mini", ds.input_shape, 2, seed=args.seed)
    n_slots, history, global_history = 4096, 32, 1024  # capacity 131,072 entries >= 10^5
    configs = {"user": dict(scope="user", n_slots=n_slots, history=history),
               "global": dict(scope="global", n_slots=n_slots, history=global_history)}
    models = {k: build_defended_model(clf, threshold=1e-4, **kw) for k, kw in configs.items()}
    fns, layer_fns = {}, {}
    for k, m in models.items():
        fns[k] = tf.function(lambda x, ids, m=m: m({"image": x, "user_id": ids}, training=False))
        layer_fns[k] = tf.function(lambda x, p, ids, m=m: similarity_layer(m)([x, p, ids]))
    bare = tf.function(lambda x: clf(x, training=False))

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.log_softmax(clf(x, training=False))[:, 0])
        return tape.gradient(loss, x)

    rows = []
    for n in STORED:
        for k, m in models.items():
            fill(m, ds.x, n, history, rng)
        stored_thumbs = thumbnail(ds.x[rng.integers(0, len(ds), n)], 16).numpy().reshape(n, -1)
        for b in BATCHES:
            reps = args.reps // 4 if b == 1 else max(args.reps // 20, 5)  # model timings; the layer gets reps
            x = tf.constant(ds.x[rng.integers(0, len(ds), b)])
            ids = tf.constant([f"user-{i}" for i in range(b)])  # users whose rings are full
            t_bare = timed(lambda: bare(x), reps)
            t_limit = timed(lambda: forward_backward(x), reps)
            q = thumbnail(x, 16).numpy().reshape(b, -1)
            t_peer = timed(lambda: ((stored_thumbs[None] - q[:, None]) ** 2).mean(-1).min(-1), max(reps // 4, 3))
            row = {"stored_queries": n, "batch": b, "bare_ms": t_bare, "forward_backward_ms": t_limit,
                   "peer_exhaustive_search_ms": t_peer}
            probs = tf.nn.softmax(bare(x))
            for k in models:
                t = timed(lambda k=k: fns[k](x, ids), reps)
                t_layer = timed(lambda k=k: layer_fns[k](x, probs, ids), args.reps)
                row[f"defended_{k}_ms"] = t
                row[f"layer_{k}_ms"] = t_layer
                row[f"added_ms_per_query_{k}"] = t_layer["median_ms"] / b
                row[f"defended_minus_bare_ms_per_query_{k}"] = (t["median_ms"] - t_bare["median_ms"]) / b
            row["peer_ms_per_query"] = t_peer["median_ms"] / b
            rows.append(row)
            print(f"stored={n:>6} batch={b:>2}  bare {t_bare['median_ms']:.2f} ms  defended user "
                  f"{row['defended_user_ms']['median_ms']:.2f} ms  added/query user "
                  f"{row['added_ms_per_query_user']:.3f}"
                  f" global {row['added_ms_per_query_global']:.3f}  peer/query {row['peer_ms_per_query']:.3f} ms")
    growth = {}
    for b in BATCHES:
        by_n = {r["stored_queries"]: r for r in rows if r["batch"] == b}
        for k in configs:
            for what in ("layer", "defended"):
                lo = max(by_n[STORED[0]][f"{what}_{k}_ms"]["median_ms"], 1e-9)
                growth[f"batch{b}_{what}_{k}"] = by_n[STORED[-1]][f"{what}_{k}_ms"]["median_ms"] / lo
        growth[f"batch{b}_peer"] = by_n[STORED[-1]]["peer_ms_per_query"] / by_n[STORED[0]]["peer_ms_per_query"]
    at_max = {r["batch"]: r for r in rows if r["stored_queries"] == STORED[-1]}
    result = {
        "command": f"python scripts/bench_prediction_similarity.py --seed {args.seed} --reps {args.reps}",
        "seed": args.seed, "tensorflow": tf.__version__, "python": platform.python_version(),
        "cpus": os.cpu_count(), "machine": platform.machine(),
        "note": "CPU shared with other jobs (load average in 'load'); times are medians (and minima) of repeated "
                "calls of compiled functions; added latency is the layer's own time per query.",
        "load": list(os.getloadavg()),
        "classifier": {"name": "vgg_mini", "input_shape": list(ds.input_shape), "params": int(clf.count_params())},
        "layer": {k: {**v, "metric": "mse", "representation": "thumbnail", "thumbnail_size": 16}
                  for k, v in configs.items()},
        "rows": rows,
        "growth_time_1e3_to_1e5": growth,
        "targets_at_1e5": {"added_ms_per_query_batch64_user": at_max[64]["added_ms_per_query_user"],
                           "target_batch64_ms": 1.0,
                           "added_ms_per_query_batch1_user": at_max[1]["added_ms_per_query_user"],
                           "target_batch1_ms": 3.0, "growth_target": 1.5},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
