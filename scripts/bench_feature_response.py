"""Benchmark: extra cost of the feature-response detector per image, relative to a plain forward pass.

Measured in one run, per model (vgg_mini on 50x50x3 IDC-sized images, LeNet on MNIST, VGG16 at 50x50):
  forward      the compiled forward pass (tf.function), the unit of every ratio
  limit        the compiled forward + backward limit: the plain input gradient of the top logit
  native       ours: the compiled guided backprop + local spatial entropy (FeatureResponseDetector)
  innvestigate the peer: iNNvestigate's guided backprop in the spawned worker + the same entropy
Untrained weights (timing does not depend on them). Interleaved repeats after warm-up; ratios use the
fastest repeat of each (the least disturbed on a shared machine), medians are recorded too.

    python scripts/bench_feature_response.py --seed 0   # writes docs/benchmarks/feature_response.json
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

from advkeras.detectors.feature_response import FeatureResponseDetector, mean_local_entropy  # noqa: E402
from advkeras.explain.innvestigate_worker import InnvestigateWorker  # noqa: E402
from advkeras.models import build_classifier  # noqa: E402
from advkeras.runs import write_json  # noqa: E402

CASES = [("vgg_mini", (50, 50, 3), 2, 128, 15), ("lenet", (28, 28, 1), 10, 256, 25), ("vgg16", (50, 50, 3), 2, 32, 7)]


def _interleaved_seconds(fns: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Time each function `repeats` times, round-robin (so load changes hit all alike); min and median."""
    for fn in fns.values():
        fn()  # warm-up (tracing, the worker's analyzer graph)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: {"min": float(np.min(v)), "median": float(np.median(v))} for k, v in times.items()}


def bench_case(backbone: str, shape: tuple, n_classes: int, batch: int, repeats: int, seed: int,
               with_peer: bool) -> dict:
    model = build_classifier(backbone, shape, n_classes, seed=seed)
    x = tf.constant(np.random.default_rng(seed).random((batch, *shape), dtype=np.float32))

    @tf.function
    def forward(x):
        return model(x, training=False)

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            top = tf.reduce_max(model(x, training=False), axis=1)
        return tape.gradient(top, x)

    detector_fn = FeatureResponseDetector(model, window=4).entropy_function()
    row = {"backbone": backbone, "input_shape": list(shape), "batch": batch, "repeats": repeats}
    fns = {"forward": lambda: forward(x).numpy(),
           "limit_forward_backward": lambda: forward_backward(x).numpy(),
           "native_guided_backprop_entropy": lambda: detector_fn(x)[0].numpy()}
    worker = InnvestigateWorker(model, batch_size=batch) if with_peer else None
    if worker is not None:
        xn = x.numpy()
        fns["innvestigate_guided_backprop_entropy"] = lambda: mean_local_entropy(worker.analyze(xn), 4).numpy()
    try:
        stats = _interleaved_seconds(fns, repeats)
    finally:
        if worker is not None:
            worker.close()
    row["seconds_per_image"] = {k: {s: v / batch for s, v in st.items()} for k, st in stats.items()}
    # Ratios of the fastest repeats: on a shared machine the minimum is the least disturbed estimate.
    row["ratio_to_forward"] = {k: st["min"] / stats["forward"]["min"] for k, st in stats.items()}
    row["ratio_to_forward_median"] = {k: st["median"] / stats["forward"]["median"] for k, st in stats.items()}
    row["native_vs_limit"] = stats["native_guided_backprop_entropy"]["min"] / stats["limit_forward_backward"]["min"]
    print(backbone, {k: round(v, 2) for k, v in row["ratio_to_forward"].items()}, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/benchmarks/feature_response.json")
    ap.add_argument("--skip-vgg16", action="store_true")
    args = ap.parse_args()
    tf.keras.utils.set_random_seed(args.seed)
    rows = [bench_case(*case, seed=args.seed, with_peer=True) for case in CASES
            if not (args.skip_vgg16 and case[0] == "vgg16")]
    write_json(Path(args.out), {
        "benchmark": "feature-response detector cost per image vs a plain compiled forward pass",
        "command": f"python scripts/bench_feature_response.py --seed {args.seed}",
        "target": "native detector at most 3x the forward pass",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__,
                    "load_average_at_start": list(os.getloadavg()),
                    "note": "CPU only, 2 cores shared with other jobs: ratios are steadier than seconds"},
        "results": rows})


if __name__ == "__main__":
    main()
