"""Sharded attacks at scale: one worker vs two workers on 127.0.0.1 (TF_CONFIG), and a killed-then-resumed run.

    python scripts/bench_sharded_attack.py --data ../shared/data/idc --attack pgd --eps 4/255

1. Trains a model once (`advkeras train`, 1 epoch, seed 0) unless --model is given.
2. `advkeras attack --all-images --shard-size S` with one worker (wall time).
3. The same with two worker processes started together, each told its place by a TF_CONFIG naming two
   workers on 127.0.0.1 (as MultiWorkerMirroredStrategy would read it); wall time until both end.
4. The same again, the process killed (SIGKILL) as soon as its second shard is on disk, then rerun.
Checks that 3 and 4 give exactly the per-image results (labels, predictions, success, norms) and the summary
(all but the timing) of 2, and writes docs/benchmarks/sharded_attack.json with the times and the speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ADVKERAS = str(Path(sys.executable).with_name("advkeras"))


def parse(argv=None, name: str = "sharded_attack", doc: str = __doc__) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "idc"))
    p.add_argument("--model", default=None)
    p.add_argument("--attack", default="pgd")
    p.add_argument("--eps", default="4/255")
    p.add_argument("--backend", default="native")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--shard-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128, help="images per batch (per replica under a strategy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=f"/tmp/advkeras_{name}")
    p.add_argument("--threads", type=int, default=1, help="TF intra-op threads per worker")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / f"{name}.json"))
    return p.parse_args(argv)


def env(args, tf_config: dict | None = None) -> dict:
    e = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": str(args.threads),
         "TF_NUM_INTEROP_THREADS": "1"}
    e.pop("TF_CONFIG", None)
    if tf_config is not None:
        e["TF_CONFIG"] = json.dumps(tf_config)
    return e


def attack_cmd(args, model: str, out: Path) -> list[str]:
    return [ADVKERAS, "attack", "--model", model, "--data", args.data, "--attack", args.attack, "--eps", args.eps,
            "--backend", args.backend, "--param", f"steps={args.steps}", "--all-images", "--shard-size",
            str(args.shard_size), "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--out", str(out)]


def results(out: Path) -> tuple[dict, dict]:
    summary = json.loads((out / "summary.json").read_text())
    with np.load(out / "per_image.npz") as z:
        per_image = {k: z[k] for k in z.files}
    return summary, per_image


def same(a: tuple[dict, dict], b: tuple[dict, dict]) -> dict:
    (sa, pa), (sb, pb) = a, b
    keys = sorted(set(sa) - {"seconds"})
    return {"summary_equal": all(sa[k] == sb.get(k) for k in keys),
            "per_image_equal": pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)}


def workspace(args) -> tuple[Path, str]:
    """The work folder, and the model attacked: --model, else one trained once there (1 epoch, --seed)."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.model is not None:
        return work, args.model
    subprocess.run([ADVKERAS, "train", "--data", args.data, "--epochs", "1", "--seed", str(args.seed), "--out",
                    str(work / "train"), "--force"], check=True, env=env(args))
    return work, str(work / "train" / "model.keras")


def main(argv=None) -> dict:
    args = parse(argv)
    work, model = workspace(args)
    report = {"command": "python scripts/bench_sharded_attack.py " + " ".join(sys.argv[1:]), "args": vars(args),
              "cpu_count": os.cpu_count()}
    for name in ("one", "two", "killed"):
        subprocess.run(["rm", "-rf", str(work / name)], check=True)

    t0 = time.perf_counter()
    subprocess.run(attack_cmd(args, model, work / "one"), check=True, env=env(args), stdout=subprocess.DEVNULL)
    report["one_worker_seconds"] = time.perf_counter() - t0

    cluster = {"worker": ["127.0.0.1:20000", "127.0.0.1:20001"]}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(attack_cmd(args, model, work / "two"), stdout=subprocess.DEVNULL,
                              env=env(args, {"cluster": cluster, "task": {"type": "worker", "index": i}}))
             for i in range(2)]
    codes = [p.wait() for p in procs]
    report["two_workers_seconds"] = time.perf_counter() - t0
    if not (work / "two" / "summary.json").exists():  # both ended at once: neither saw the other's last shard
        subprocess.run(attack_cmd(args, model, work / "two"), check=True, env=env(args), stdout=subprocess.DEVNULL)
    report["two_worker_exit_codes"] = codes
    report["speed_up"] = report["one_worker_seconds"] / report["two_workers_seconds"]

    proc = subprocess.Popen(attack_cmd(args, model, work / "killed"), stdout=subprocess.DEVNULL, env=env(args))
    shards = work / "killed" / "shards"
    while proc.poll() is None and len(list(shards.glob("shard_*.npz"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    report["shards_before_kill"] = len(list(shards.glob("shard_*.npz")))
    subprocess.run(attack_cmd(args, model, work / "killed"), check=True, env=env(args), stdout=subprocess.DEVNULL)

    one = results(work / "one")
    report["n_images"] = one[0]["n"]
    report["shards"] = one[0]["shards"]
    report["success_rate"] = one[0]["success_rate"]
    report["two_workers_vs_one"] = same(one, results(work / "two"))
    report["killed_and_resumed_vs_one"] = same(one, results(work / "killed"))
    return write_report(report, args.out)


def write_report(report: dict, out: str) -> dict:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
