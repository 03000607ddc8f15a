"""Online PGD adversarial training under a tf.distribute strategy (one machine or several workers).

One machine, all its GPUs (or N logical CPU devices with --cpu-replicas N, for trying it out):
    python scripts/pgd_training_distributed.py --strategy mirrored --cpu-replicas 2 --out runs/pgd-mirrored
Several machines (run once per worker, same --workers list, each with its own --worker-index):
    python scripts/pgd_training_distributed.py --strategy multiworker --workers host1:12345,host2:12345 \
        --worker-index 0 --out runs/pgd-w0
Without --model it trains a LeNet (seed --seed) on the embedded MNIST sample; with --model it
adversarially trains a copy of that .keras classifier on --data. Each worker writes OUT/result.json
(replicas, history, a digest of the final weights) and, on the chief (index 0), OUT/model.keras.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategy", choices=["none", "mirrored", "multiworker"], default="mirrored")
    p.add_argument("--cpu-replicas", type=int, default=0, help="split the CPU into N logical devices")
    p.add_argument("--workers", default="", help="comma-separated host:port of every worker (multiworker)")
    p.add_argument("--worker-index", type=int, default=0)
    p.add_argument("--model", default=None, help=".keras classifier to train a copy of")
    p.add_argument("--data", default="mnist", help="embedded sample name or dataset folder")
    p.add_argument("--n-train", type=int, default=0, help="use only the first N training images (0: all)")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=5, help="PGD steps per batch")
    p.add_argument("--no-random-start", action="store_true")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64, help="global batch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def _strategy(args: argparse.Namespace):
    # Both the device split and TF_CONFIG must be in place before TensorFlow initialises its devices.
    if args.strategy == "multiworker":
        workers = [w for w in args.workers.split(",") if w]
        if len(workers) < 2 and "TF_CONFIG" not in os.environ:
            sys.exit("--strategy multiworker needs --workers host:port,host:port (or TF_CONFIG set).")
        if workers:
            os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers},
                                                  "task": {"type": "worker", "index": args.worker_index}})
    import tensorflow as tf

    if args.cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_replicas)
    if args.strategy == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if args.strategy == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


def main(argv: list[str] | None = None) -> dict:
    args = _parse(sys.argv[1:] if argv is None else argv)
    strategy = _strategy(args)
    import hashlib

    import numpy as np

    from advkeras.data import load_dataset
    from advkeras.defenses.adversarial_training import pgd_training
    from advkeras.models import build_classifier, load_model, split_dataset
    from advkeras.models.zoo import default_backbone

    train, val, _ = split_dataset(load_dataset(args.data), args.seed)
    if args.n_train:
        train = train.subset(np.arange(min(args.n_train, len(train))))
    if args.model:
        model = load_model(args.model)
    else:  # no dropout: the run is deterministic given the seed, so replicas can be compared
        model = build_classifier(default_backbone(train.input_shape), train.input_shape,
                                 train.n_classes, dropout=0.0, seed=args.seed)
    result = pgd_training(model, train, None, eps=args.eps, steps=args.steps, epochs=args.epochs,
                          batch_size=args.batch_size, random_start=not args.no_random_start,
                          steps_per_epoch=args.steps_per_epoch, strategy=strategy, seed=args.seed, progress=False)
    weights = result.model.get_weights()
    os.makedirs(args.out, exist_ok=True)
    np.savez(os.path.join(args.out, "weights.npz"), *weights)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in weights)).hexdigest()
    summary = {"info": result.info, "history": result.history, "weights_sha256": digest,
               "worker_index": args.worker_index,
               "weights_changed": bool(any(not np.array_equal(a, b) for a, b in zip(weights, model.get_weights())))}
    with open(os.path.join(args.out, "result.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    if args.worker_index == 0:
        result.model.save(os.path.join(args.out, "model.keras"))
    return summary


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
