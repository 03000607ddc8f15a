"""Latency added by prediction similarity (index store) per query, at 10^3 to 10^6 stored queries.

Measures, in one run and on the same classifier (vgg_mini, IDC 50x50x3):
- bare: the compiled classifier forward (the model the defense wraps);
- ours: the compiled `IndexedPredictionSimilarity` layer alone on the same images and probabilities (what the
  defense adds; measured directly because on a shared CPU the difference of two model timings is noisy), and
  the compiled defended model, with one layer of capacity 10^6 holding 10^3, 10^4, 10^5 and 10^6 queries;
- peer: an exhaustive search of every stored view in numpy (each query's identity view against all stored
  queries, what the index avoids; with all lookup views it would cost `n_views` times more), timed alone;
- limit: the compiled forward+backward of the bare classifier (one gradient query of an attack).

The history is filled without running 10^6 queries through the layer: stored views are views of the IDC
sample's patches with Gaussian noise (sd 0.05, renormalised), and the index holds what sequential insertion
leaves (each bucket keeps the last `ways` entries); `tests/defenses/test_indexed_similarity.py` checks the
layer's own insertion. The timed queries are other sample patches of users who have stored queries.
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
from advkeras.defenses.prediction_similarity import build_defended_model, canonical_views, similarity_layer  # noqa: E402
from advkeras.models import build_classifier  # noqa: E402
from advkeras.runs import write_json  # noqa: E402

STORED = (1_000, 10_000, 100_000, 1_000_000)
BATCHES = (1, 64)
PER_USER = 1000  # stored queries per user


def timed(fn, reps: int) -> dict:
    fn()  # warm-up (and trace)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * float(np.min(times)), "reps": reps}


def fill(layer, base_views: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Put n stored queries (users of PER_USER queries each) into the layer's state; returns their views."""
    layer.reset_state()
    q = layer.capacity
    views = base_views[rng.integers(0, len(base_views), n)] + rng.normal(0, 0.05, (n, base_views.shape[1]))
    views -= views.mean(1, keepdims=True)
    views = (views / np.linalg.norm(views, axis=1, keepdims=True)).astype(np.float32)
    seq = np.arange(1, n + 1, dtype=np.int64)
    users = np.array([f"user-{i // PER_USER}" for i in range(n)])
    owner = tf.strings.to_hash_bucket_fast(users, np.iinfo(np.int64).max - 1).numpy() + 1
    state = layer.get_state()
    slot = seq % q
    state["stored_view"][slot] = views.astype(np.float16)
    state["stored_seq"][slot], state["stored_owner"][slot] = seq, owner
    state["stored_content"][slot] = seq  # all different
    state["stored_user"] = np.full(q, b"", dtype=object)
    state["stored_user"][slot] = users.astype(bytes)
    sig = layer._signatures(tf.constant(views[:, None]))[:, 0]  # noqa: SLF001  n x T
    keys, rows = [], []
    for scope in ("user", "global"):
        k, r = layer._keys(sig, tf.constant(owner), scope)  # noqa: SLF001
        keys.append(k.numpy().ravel()), rows.append(r.numpy().ravel())
    keys, rows = np.concatenate(keys), np.concatenate(rows)
    seqs = np.tile(np.repeat(seq, layer.tables), 2)
    order = np.lexsort((seqs, rows))  # by bucket, then time
    rows, keys, seqs = rows[order], keys[order], seqs[order]
    start = np.searchsorted(rows, rows, side="left")
    end = np.searchsorted(rows, rows, side="right")
    keep = end - np.arange(len(rows)) <= layer.ways  # the last `ways` of each bucket
    way = (np.arange(len(rows)) - np.maximum(start, end - layer.ways))[keep]
    state["index_key"][:] = 0
    state["index_seq"][:] = 0
    state["index_key"][rows[keep], way] = keys[keep]
    state["index_seq"][rows[keep], way] = seqs[keep]
    state["queries"] = np.int64(n)
    layer.set_state(state)
    return views


def state_bytes(layer) -> int:
    total = 0
    for w in layer.weights:
        if w.dtype == tf.string:
            total += int(sum(len(s) + 8 for s in w.numpy()))  # payload + a pointer each (approximate)
        else:
            total += int(np.prod(w.shape)) * w.dtype.size
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/benchmarks/prediction_similarity.json")
    ap.add_argument("--reps", type=int, default=60)
    ap.add_argument("--bits", type=int, default=None, help="signature bits (default: the layer's)")
    ap.add_argument("--tables", type=int, default=None, help="hash tables (default: the layer's)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    ds = load_sample("idc")
    clf = build_classifier("vgg_mini", ds.input_shape, 2, seed=args.seed)
    extra = {k: v for k, v in (("bits", args.bits), ("tables", args.tables)) if v is not None}
    defended = build_defended_model(clf, threshold=0.1, global_threshold=0.1, capacity=STORED[-1], **extra)
    layer = similarity_layer(defended)
    base_views = canonical_views(ds.x[:1500], max_shift=0, orientations=1).numpy()[:, 0]
    model_fn = tf.function(lambda x, ids: defended({"image": x, "user_id": ids}, training=False))
    layer_fn = tf.function(lambda x, p, ids: layer([x, p, ids]))
    bare = tf.function(lambda x: clf(x, training=False))

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.log_softmax(clf(x, training=False))[:, 0])
        return tape.gradient(loss, x)

    rows = []
    for n in STORED:
        t0 = time.perf_counter()
        stored = fill(layer, base_views, n, rng)
        fill_s = time.perf_counter() - t0
        snapshot = layer.get_state()
        for b in BATCHES:
            reps = args.reps if b == 1 else max(args.reps // 4, 5)
            x = tf.constant(ds.x[1500 + rng.integers(0, len(ds) - 1500, b)])
            ids = tf.constant([f"user-{i % max(n // PER_USER, 1)}" for i in range(b)])
            probs = tf.nn.softmax(bare(x))
            t_bare, t_limit = timed(lambda: bare(x), reps), timed(lambda: forward_backward(x), reps)
            q = canonical_views(x).numpy()[:, 0]  # identity view only: a lower bound of an exhaustive search
            t_peer = timed(lambda: (q @ stored.T).max(1), max(reps // 10, 3))
            t_layer = timed(lambda: layer_fn(x, probs, ids), reps)
            t_model = timed(lambda: model_fn(x, ids), reps)
            layer.set_state(snapshot)  # the timed calls stored queries; the next batch size starts alike
            row = {"stored_queries": n, "batch": b, "fill_seconds": fill_s, "bare_ms": t_bare,
                   "forward_backward_ms": t_limit, "peer_exhaustive_search_ms": t_peer, "layer_ms": t_layer,
                   "defended_ms": t_model, "added_ms_per_query": t_layer["median_ms"] / b,
                   "peer_ms_per_query": t_peer["median_ms"] / b,
                   "defended_minus_bare_ms_per_query": (t_model["median_ms"] - t_bare["median_ms"]) / b}
            rows.append(row)
            print(f"stored={n:>7} batch={b:>2}  bare {t_bare['median_ms']:.2f} ms  layer {t_layer['median_ms']:.2f} ms"
                  f"  added/query {row['added_ms_per_query']:.3f} ms  peer/query {row['peer_ms_per_query']:.3f} ms",
                  flush=True)
    growth = {}
    for b in BATCHES:
        by_n = {r["stored_queries"]: r for r in rows if r["batch"] == b}
        growth[f"batch{b}_layer"] = by_n[STORED[-1]]["layer_ms"]["median_ms"] / by_n[STORED[0]]["layer_ms"]["median_ms"]
        growth[f"batch{b}_peer"] = by_n[STORED[-1]]["peer_ms_per_query"] / by_n[STORED[0]]["peer_ms_per_query"]
    at_max = {r["batch"]: r for r in rows if r["stored_queries"] == STORED[-1]}
    result = {
        "command": f"python scripts/bench_prediction_similarity.py --seed {args.seed} --reps {args.reps}"
                   + "".join(f" --{k} {v}" for k, v in extra.items()) + f" --out {args.out}",
        "seed": args.seed, "tensorflow": tf.__version__, "python": platform.python_version(),
        "cpus": os.cpu_count(), "machine": platform.machine(), "load": list(os.getloadavg()),
        "note": "medians (and minima) of repeated calls of compiled functions; added latency is the layer's own "
                "time per query; the history is filled synthetically (see the script's docstring).",
        "classifier": {"name": "vgg_mini", "input_shape": list(ds.input_shape), "params": int(clf.count_params())},
        "layer": {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable", "dtype")},
        "state_bytes_per_stored_query": state_bytes(layer) / layer.capacity,
        "rows": rows, "growth_time_1e3_to_1e6": growth,
        "targets_at_1e6": {"added_ms_per_query_batch64": at_max[64]["added_ms_per_query"], "target_batch64_ms": 1.0,
                           "added_ms_per_query_batch1": at_max[1]["added_ms_per_query"], "target_batch1_ms": 3.0,
                           "growth_batch64": growth["batch64_layer"], "growth_batch1": growth["batch1_layer"],
                           "growth_target": 1.5},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
