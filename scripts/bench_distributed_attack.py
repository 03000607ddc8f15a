"""Native attacks under tf.distribute: one process vs two MultiWorkerMirroredStrategy workers on 127.0.0.1, a
killed-then-resumed run, and in the same run the peers: the same attack split over two processes by shard
(no collective), foolbox on one process, and the compiled forward+backward limit.

    python scripts/bench_distributed_attack.py --data ../shared/data/idc --attack pgd --eps 4/255 --steps 10

1. Trains a model once (`advkeras train`, 1 epoch, seed 0) unless --model is given.
2. `advkeras attack --all-images --strategy mirrored` on one process (one CPU device): the reference.
3. The same with `--strategy multiworker`, two worker processes, TF_CONFIG naming both on 127.0.0.1.
4. The same again, worker 1 killed (SIGKILL) once the chief has written two shards (worker 0 then fails or is
   stopped: a collective cannot lose a member), then both rerun with the same command.
5. Peers: two processes splitting the shards (`--worker i --workers 2`, no strategy; its PGD random starts are
   drawn per batch, so its adversarials differ: only the time is compared); foolbox PGD on one process.
6. Limit: `steps` + 1 forward+backward passes of the model over the same images in one compiled function, one
   process, the same thread count: what any PGD of that many steps must at least spend.
Checks that 3 and 4 give exactly the per-image results and summary (all but the timing) of 2; writes
docs/benchmarks/distributed_attack.json.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sharded_attack import ADVKERAS, env, parse, results, same, workspace, write_report  # noqa: E402

LIMIT = r"""
import sys, time
import numpy as np
import tensorflow as tf
from advkeras.data import load_dataset
from advkeras.models import load_model, split_dataset
model, steps, seed, batch = load_model(sys.argv[1]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
x = split_dataset(load_dataset(sys.argv[2], lazy=True), seed)[2].in_memory().x
y = np.argmax(model.predict(x, batch_size=256, verbose=0), 1)

@tf.function(input_signature=[tf.TensorSpec([None, *x.shape[1:]]), tf.TensorSpec([None], tf.int64)])
def passes(xb, yb):
    g = tf.zeros_like(xb)
    for _ in range(steps + 1):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            loss = tf.reduce_sum(tf.keras.losses.sparse_categorical_crossentropy(yb, model(xb + 0 * g), from_logits=True))
        g = tape.gradient(loss, xb)
    return g
passes(x[:batch], y[:batch])
t0 = time.perf_counter()
for i in range(0, len(x), batch):
    passes(x[i:i + batch], y[i:i + batch]).numpy()
print(time.perf_counter() - t0)
"""


def commit() -> str:
    """The code measured: HEAD of the tree this script runs from (plus "+changes" when it has uncommitted ones)."""
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                           text=True)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def cmd(args, model: str, out: Path, *extra: str) -> list[str]:
    return [ADVKERAS, "attack", "--model", model, "--data", args.data, "--attack", args.attack, "--eps", args.eps,
            "--param", f"steps={args.steps}", "--all-images", "--shard-size", str(args.shard_size), "--batch-size",
            str(args.batch_size), "--seed", str(args.seed), "--out", str(out), *extra]


def two_workers(args, model: str, out: Path, port: int, kill_after: int | None = None) -> list[int]:
    """Both MultiWorkerMirrored workers; with `kill_after`, worker 1 is killed once the chief has written that many
    shards, and the survivor stopped if it has not failed within a minute."""
    hosts = [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"]
    procs = [subprocess.Popen(cmd(args, model, out, "--strategy", "multiworker"), stdout=subprocess.DEVNULL,
                              env=env(args, {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}))
             for i in range(2)]
    if kill_after is not None:
        while procs[0].poll() is None and len(list((out / "shards").glob("shard_*.npz"))) < kill_after:
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGKILL)
        try:
            procs[0].wait(timeout=60)
        except subprocess.TimeoutExpired:
            procs[0].send_signal(signal.SIGKILL)
    return [p.wait() for p in procs]


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def main(argv=None) -> dict:
    args = parse(argv, "distributed_attack", __doc__)
    batch = args.batch_size
    work, model = workspace(args)
    for name in ("one", "two", "killed", "processes", "foolbox"):
        subprocess.run(["rm", "-rf", str(work / name)], check=True)
    report = {"command": "python scripts/bench_distributed_attack.py " + " ".join(sys.argv[1:]), "args": vars(args),
              "seconds": {}, "cpu_count": os.cpu_count(), "commit": commit(), "load_average_at_start": os.getloadavg()}
    run = lambda *c: subprocess.run(list(c), check=True, env=env(args), stdout=subprocess.DEVNULL)  # noqa: E731
    report["seconds"]["one_process_strategy"], _ = timed(lambda: run(*cmd(args, model, work / "one", "--strategy",
                                                                          "mirrored")))
    report["seconds"]["two_workers_strategy"], codes = timed(lambda: two_workers(args, model, work / "two", 20010))
    report["two_worker_exit_codes"] = codes
    report["shards_before_kill"] = None
    codes = two_workers(args, model, work / "killed", 20020, kill_after=2)
    report["killed_exit_codes"] = codes
    report["shards_before_kill"] = len(list((work / "killed" / "shards").glob("shard_*.npz")))
    report["seconds"]["resume_after_kill"], codes = timed(lambda: two_workers(args, model, work / "killed", 20030))
    report["resumed_exit_codes"] = codes

    def processes():
        procs = [subprocess.Popen(cmd(args, model, work / "processes", "--backend", "native", "--worker", str(i),
                                      "--workers", "2"), stdout=subprocess.DEVNULL, env=env(args)) for i in range(2)]
        return [p.wait() for p in procs]
    report["seconds"]["two_processes_by_shard"], _ = timed(processes)
    if not (work / "processes" / "summary.json").exists():  # both ended together: neither merged
        run(*cmd(args, model, work / "processes", "--backend", "native"))
    report["seconds"]["foolbox_one_process"], _ = timed(lambda: run(*cmd(args, model, work / "foolbox", "--backend",
                                                                         "foolbox")))
    limit = subprocess.run([sys.executable, "-c", LIMIT, model, args.data, str(args.steps), str(args.seed),
                            str(batch)], check=True, env=env(args), capture_output=True, text=True)
    report["seconds"]["compiled_forward_backward_limit"] = float(limit.stdout.strip().splitlines()[-1])

    one = results(work / "one")
    report.update(n_images=one[0]["n"], shards=one[0]["shards"], success_rate=one[0]["success_rate"],
                  speed_up_two_workers=report["seconds"]["one_process_strategy"]
                  / report["seconds"]["two_workers_strategy"],
                  two_workers_vs_one=same(one, results(work / "two")),
                  killed_and_resumed_vs_one=same(one, results(work / "killed")),
                  success_rate_processes_by_shard=results(work / "processes")[0]["success_rate"],
                  success_rate_foolbox=results(work / "foolbox")[0]["success_rate"])
    report["load_average_at_end"] = os.getloadavg()  # other work on the machine slows every row alike
    return write_report(report, args.out)


if __name__ == "__main__":
    main()
