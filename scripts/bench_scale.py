"""Peak memory and throughput of `advkeras train` / `advkeras assess` on IDC-layout folders of growing size.

    python scripts/bench_scale.py --idc-root ../shared/data/idc --sizes 2000 7680 100000

Each size is an IDC-layout tree built from the shared real patches: a stratified subset (2,000), all of them
(7,680), or copies under new patient folders, copy k turned by the k-th of the 8 flips/rotations of the
square (100,000: the issue's synthetic set; copies keep their class and become new "patients", so the
patient-wise split stays honest). Each command runs in its own process under `/usr/bin/time -v`, whose
"Maximum resident set size" is the peak memory reported; `--modes memory` repeats `train` with
`--in-memory` (the old behaviour: every image decoded first) for comparison. Writes
docs/benchmarks/scale.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ADVKERAS = [str(Path(sys.executable).with_name("advkeras"))]  # the console script of this environment


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--idc-root", default=str(ROOT.parent / "shared" / "data" / "idc"))
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 7680, 100000])
    p.add_argument("--work", default="/tmp/advkeras_scale", help="where the trees and run folders go")
    p.add_argument("--commands", nargs="+", default=["train", "assess"], choices=["train", "assess"])
    p.add_argument("--modes", nargs="+", default=["stream", "memory"], choices=["stream", "memory"],
                   help="memory: train with --in-memory (assess always streams)")
    p.add_argument("--memory-max-size", type=int, default=8000,
                   help="skip --in-memory above this many images (it needs ~115 KB per patch)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-fit", type=int, default=None, help="assess: images a fitting stage holds (config max_fit)")
    p.add_argument("--probe-steps", type=int, default=0,
                   help="instead of the commands: a probe process that loads the folder as `train` does, trains "
                        "this many batches of the full shuffled pipeline and predicts every held-out image "
                        "(bounded time on a slow machine; peak memory is reached in the first batches)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "scale.json"))
    return p.parse_args(argv)


def source_files(root: Path) -> list[tuple[Path, str, int]]:
    return [(f, patient.name, int(label.name)) for patient in sorted(p for p in root.iterdir() if p.is_dir())
            for label in sorted(patient.iterdir()) if label.name in ("0", "1") for f in sorted(label.glob("*.png"))]


def build_tree(files: list[tuple[Path, str, int]], size: int, dest: Path, seed: int) -> Path:
    """An IDC-layout tree of `size` real patches (see the module docstring); reused when already built."""
    from PIL import Image

    marker = dest / ".complete"
    if marker.exists():
        return dest
    if size <= len(files):
        from advkeras.data import stratified_indices

        y = np.array([f[2] for f in files])
        groups = np.array([f[1] for f in files])
        chosen = [(files[i], 0) for i in stratified_indices(y, size, groups=groups, seed=seed)]
    else:
        copies = -(-size // len(files))
        chosen = [(f, k) for k in range(copies) for f in files][:size]
    for (path, patient, label), k in chosen:
        folder = dest / (patient if k == 0 else f"{patient}c{k:02d}") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        if k == 0:
            if not target.exists():
                os.symlink(path.resolve(), target)
            continue
        img = np.asarray(Image.open(path).convert("RGB"))
        img = np.rot90(img[:, ::-1] if k % 8 >= 4 else img, k % 4)  # the 8 symmetries of the square
        Image.fromarray(np.ascontiguousarray(img)).save(target)
    marker.write_text(str(size))
    return dest


def timed(cmd: list[str], log: Path) -> dict:
    """Run `cmd` under /usr/bin/time -v; wall seconds, peak resident memory (MB) and exit status."""
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=fh, stderr=subprocess.STDOUT,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    text = log.read_text(errors="replace")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"command": " ".join([Path(cmd[0]).name, *cmd[1:]]), "seconds": time.perf_counter() - start,
            "returncode": proc.returncode, "peak_rss_mb": int(peak.group(1)) / 1024 if peak else None}


PROBE = """
import sys, time
import numpy as np
from advkeras.data import load_dataset
from advkeras.models import build_classifier, evaluate_classifier, split_dataset
from advkeras.models.training import make_pipeline
import tensorflow as tf
t0 = time.perf_counter()
ds = load_dataset(sys.argv[1], lazy=sys.argv[3] == "stream")
train, val, test = split_dataset(ds, 0)
model = build_classifier("vgg_mini", ds.input_shape, ds.n_classes, seed=0)
model.compile(tf.keras.optimizers.Adam(1e-3), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
t1 = time.perf_counter()
model.fit(make_pipeline(train, batch_size=64, shuffle=True, augment=True, seed=0).take(int(sys.argv[2])), verbose=0)
t2 = time.perf_counter()
acc = evaluate_classifier(model, test)["accuracy"]
t3 = time.perf_counter()
print("PROBE", len(ds), len(train), len(test), t1 - t0, t2 - t1, t3 - t2, acc)
"""


def probe(tree: Path, steps: int, mode: str, log: Path) -> dict:
    """Peak memory of loading, a `steps`-batch slice of a training epoch and the full held-out prediction;
    `mode` "stream" keeps the images on disk, "memory" decodes them first (the behaviour before streaming)."""
    row = timed([sys.executable, "-c", PROBE, str(tree), str(steps), mode], log)
    row["command"] = f"probe of {tree.name} ({mode}): load, {steps} training batches of 64, predict the held-out set"
    found = re.search(r"PROBE (\S+) (\S+) (\S+) (\S+) (\S+) (\S+) (\S+)", log.read_text())
    if found:
        n, n_train, n_test, load_s, train_s, pred_s, acc = found.groups()
        row.update(n=int(n), n_train=int(n_train), n_test=int(n_test), steps=steps, load_seconds=float(load_s),
                   train_seconds=float(train_s), train_images_per_second=steps * 64 / float(train_s),
                   predict_seconds=float(pred_s), predict_images_per_second=int(n_test) / float(pred_s))
    return row


def assess_config(tree: Path, dest: Path, epochs: int, max_fit: int | None = None) -> Path:
    """The default assessment with `epochs` training epochs (and `max_fit` if given); other stages as in `make demo`."""
    import yaml

    cfg = {"data": str(tree), "train": {"epochs": epochs}, **({"max_fit": max_fit} if max_fit else {})}
    dest.write_text(yaml.safe_dump(cfg))
    return dest


# `advkeras assess` with each stage timed and its own peak resident memory read: the kernel's high-water mark
# (VmHWM) is reset before the stage by writing 5 to /proc/self/clear_refs, and read after it.
STAGE_PROBE = """
import functools, json, os, sys, time
from advkeras.assess import stages
from advkeras.assess.run import assess

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

rows = []

def timed(fn):
    @functools.wraps(fn)  # assess knows a stage by its name (checkpoints)
    def stage(ctx):
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        t0, before = time.perf_counter(), status("VmRSS")
        fn(ctx)
        rows.append({"stage": fn.__name__.replace("stage_", ""), "seconds": time.perf_counter() - t0,
                     "rss_before_mb": before, "peak_rss_mb": status("VmHWM"), "rss_after_mb": status("VmRSS"),
                     "load_average_1min": os.getloadavg()[0]})  # other work on the machine slows a stage
        print("STAGE", json.dumps(rows[-1]), flush=True)
    return stage

stages.STAGES[:] = [timed(fn) for fn in stages.STAGES]  # run.py iterates this very list
assess(sys.argv[2], config=sys.argv[1], seed=int(sys.argv[3]), force=True)
"""


def assess_stages(cfg: Path, run_dir: Path, seed: int, log: Path) -> dict:
    """The assessment in its own process, per stage: seconds and peak resident memory."""
    row = timed([sys.executable, "-c", STAGE_PROBE, str(cfg), str(run_dir), str(seed)], log)
    row["command"] = f"advkeras assess --config {cfg.name} --seed {seed} (each stage timed and its peak memory read)"
    row["stages"] = [json.loads(m) for m in re.findall(r"STAGE (\{.*\})", log.read_text())]
    return row


def main(argv=None) -> dict:
    args = parse(argv)
    work = Path(args.work)
    files = source_files(Path(args.idc_root))
    result = {"command": "python scripts/bench_scale.py " + " ".join(sys.argv[1:]), "args": vars(args),
              "cpu_count": os.cpu_count(), "runs": []}
    out = Path(args.out)
    for size in args.sizes:
        t0 = time.perf_counter()
        tree = build_tree(files, size, work / f"idc_{size}", args.seed)
        built = time.perf_counter() - t0
        if args.probe_steps:
            for mode in args.modes:
                if mode == "memory" and size > args.memory_max_size:
                    continue
                row = {"size": size, "stage": "probe", "mode": mode, "tree_build_seconds": built,
                       **probe(tree, args.probe_steps, mode, work / f"probe_{size}_{mode}.log")}
                result["runs"].append(row)
                print(json.dumps(row), flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(result, indent=1))
            continue
        for command in args.commands:
            for mode in args.modes if command == "train" else ["stream"]:
                if mode == "memory" and size > args.memory_max_size:
                    continue
                run_dir = work / f"{command}_{size}_{mode}"
                if command == "train":
                    cmd = [*ADVKERAS, "train", "--data", str(tree), "--epochs", str(args.epochs), "--seed",
                           str(args.seed), "--out", str(run_dir), "--force"] + (["--in-memory"] if mode == "memory" else [])
                    row = {"size": size, "stage": command, "mode": mode, "tree_build_seconds": built,
                           **timed(cmd, work / f"{command}_{size}_{mode}.log")}
                else:
                    cfg = assess_config(tree, work / f"assess_{size}.yaml", args.epochs, args.max_fit)
                    row = {"size": size, "stage": command, "mode": mode, "tree_build_seconds": built,
                           **assess_stages(cfg, run_dir, args.seed, work / f"{command}_{size}_{mode}.log")}
                metrics = run_dir / "metrics.json"
                if metrics.exists():
                    m = json.loads(metrics.read_text())
                    split = m.get("split") or m.get("data", {}).get("split", {})
                    row["n_train"] = (split.get("train") or {}).get("n")
                    row["images_per_second"] = (row["n_train"] or 0) * args.epochs / row["seconds"]
                result["runs"].append(row)
                print(json.dumps(row), flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
