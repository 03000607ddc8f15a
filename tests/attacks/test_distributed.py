"""Native attacks under tf.distribute: the same per-image results on one device, two replicas or two workers."""
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from advkeras.attacks import generate
from advkeras.attacks.distributed import _per_image_start, distributed_attack, distributed_predict, make_strategy
from advkeras.attacks.sharded import merge_shards, run_shards
from advkeras.cli import main
from advkeras.data.files import ImageFiles
from advkeras.errors import InputError

FIELDS = ("x", "y", "clipped", "success", "pred_clean", "pred_adv")


@pytest.fixture(scope="module")
def digits(mnist_splits):
    test = mnist_splits[2]
    return test.x[:45], test.y[:45]


def _same(a, b):
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def test_without_random_start_it_is_the_native_attack(mnist_model, digits):
    x, y = digits
    for name, params in (("fgsm", {}), ("bim", {"steps": 4})):
        ours = distributed_attack(mnist_model, x, y, name, eps=0.1, batch_size=16, progress=False, **params)
        _same(ours, generate(mnist_model, x, y, name, eps=0.1, backend="native", progress=False, **params))
    assert ours.success.any() and not ours.success.all()
    np.testing.assert_array_equal(distributed_predict(mnist_model, x, batch_size=7, progress=False),
                                  np.argmax(mnist_model(x), 1))


def test_random_starts_belong_to_images_not_batches(mnist_model, digits, tmp_path):
    x, y = digits
    kw = dict(eps=0.1, seed=5, steps=3, restarts=2, progress=False)
    a = distributed_attack(mnist_model, x, y, "pgd", batch_size=16, **kw)
    b = distributed_attack(mnist_model, x, y, "pgd", batch_size=7, **kw)
    _same(a, b)
    assert not np.array_equal(a.clipped, distributed_attack(mnist_model, x, y, "pgd", batch_size=7,
                                                            **{**kw, "seed": 6}).clipped)
    # files on disk are decoded by the input pipeline: the same result as the decoded array
    paths = []
    for i, img in enumerate(x[:12]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.round(img[..., 0] * 255).astype(np.uint8)).save(paths[-1])
    files = ImageFiles(paths, (28, 28, 1))
    _same(distributed_attack(mnist_model, files, y[:12], "pgd", batch_size=5, **kw),
          distributed_attack(mnist_model, np.asarray(files), y[:12], "pgd", batch_size=5, **kw))


def test_shards_under_a_strategy_resume_and_refuse_what_it_cannot_run(mnist_model, digits, tmp_path):
    x, y = digits
    kw = dict(eps=0.1, shard_size=20, seed=1, progress=False, steps=3, strategy=tf.distribute.get_strategy())
    assert run_shards(mnist_model, x, y, "pgd", tmp_path / "a", **kw) == [0, 1, 2]
    (tmp_path / "a" / "shards" / "shard_000001.npz").unlink()
    assert run_shards(mnist_model, x, y, "pgd", tmp_path / "a", **kw) == [1]
    whole = merge_shards(tmp_path / "a")
    np.testing.assert_array_equal(whole.x, x)
    with pytest.raises(InputError, match="another run .*strategy"):  # never mixed with per-batch random starts
        run_shards(mnist_model, x, y, "pgd", tmp_path / "a", **{**kw, "strategy": None})
    with pytest.raises(InputError, match="native attacks"):
        run_shards(mnist_model, x, y, "deepfool", tmp_path / "b", backend="foolbox", **kw)
    with pytest.raises(InputError, match="untargeted"):
        run_shards(mnist_model, x, y, "pgd", tmp_path / "c", target=(y + 1) % 10, **kw)
    with pytest.raises(InputError, match="drop --worker"):
        run_shards(mnist_model, x, y, "pgd", tmp_path / "d", workers=2, **kw)


def test_each_image_and_restart_has_its_own_start():
    x = tf.fill([3, 4, 4, 1], 0.5)
    eps, seed = tf.constant(0.1), tf.constant(7, tf.int64)
    first = _per_image_start(x, eps, seed, tf.constant([0, 1, 2], tf.int64), 0).numpy()
    moved = _per_image_start(x[:2], eps, seed, tf.constant([2, 0], tf.int64), 0).numpy()  # rows elsewhere
    np.testing.assert_array_equal(moved, first[[2, 0]])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first, _per_image_start(x, eps, seed, tf.constant([0, 1, 2], tf.int64), 1).numpy())
    assert np.abs(first - 0.5).max() <= 0.1 + 1e-7


def test_bad_strategies_and_inputs_are_explained(mnist_model, digits, monkeypatch):
    x, y = digits
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        distributed_attack(mnist_model, x * 255, y, "fgsm", eps=0.1)
    with pytest.raises(InputError, match="class ids"):
        distributed_attack(mnist_model, x, y + 10, "fgsm", eps=0.1)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(InputError, match="cluster spec"):
        make_strategy("multiworker")
    with pytest.raises(InputError, match="unknown strategy"):
        make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(InputError, match="needs TF_CONFIG"):
        make_strategy("multiworker")
    with pytest.raises(InputError, match="do not fit the model"):
        distributed_attack(mnist_model, x[:, :20], y, "fgsm", eps=0.1)
    with pytest.raises(InputError, match="no images"):
        distributed_predict(mnist_model, x[:0])
    with pytest.raises(InputError, match="one label per image"):
        distributed_attack(mnist_model, x, y[:3], "fgsm", eps=0.1)
    with pytest.raises(InputError, match="eps"):
        distributed_attack(mnist_model, x, y, "pgd", eps=2.0)
    with pytest.raises(InputError, match="not available with backend 'native'"):
        distributed_attack(mnist_model, x, y, "deepfool", eps=0.1)
    res = CliRunner().invoke(main, ["attack", "--model", "m.keras", "--strategy", "mirrored", "--workers", "2"])
    assert res.exit_code != 0 and "drop --worker" in res.output


TWO_DEVICES = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from advkeras.attacks.distributed import distributed_attack
from advkeras.models import load_model
z = np.load(sys.argv[2])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
r = distributed_attack(load_model(sys.argv[1]), z["x"], z["y"], "pgd", eps=0.1, seed=5, steps=3, restarts=2,
                       strategy=strategy, batch_size=8, progress=False)
one = distributed_attack(load_model(sys.argv[1]), z["x"][:1], z["y"][:1], "pgd", eps=0.1, seed=5, steps=3,
                         strategy=strategy, batch_size=8, progress=False)  # fewer images than replicas
np.savez(sys.argv[3], clipped=r.clipped, success=r.success, pred_adv=r.pred_adv, single=one.clipped)
"""


def _env():
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    env.pop("TF_CONFIG", None)
    return env


def test_two_replicas_of_a_mirrored_strategy_give_the_one_device_result(mnist_model, digits, tmp_path):
    x, y = digits
    mnist_model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    (tmp_path / "two.py").write_text(TWO_DEVICES)
    run = subprocess.run([sys.executable, tmp_path / "two.py", tmp_path / "m.keras", tmp_path / "d.npz",
                          tmp_path / "out.npz"], env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    one = distributed_attack(mnist_model, x, y, "pgd", eps=0.1, seed=5, steps=3, restarts=2, batch_size=8,
                             progress=False)
    np.testing.assert_array_equal(got["clipped"], one.clipped)
    np.testing.assert_array_equal(got["pred_adv"], one.pred_adv)
    np.testing.assert_array_equal(got["single"], distributed_attack(mnist_model, x[:1], y[:1], "pgd", eps=0.1, seed=5,
                                                                    steps=3, progress=False).clipped)


def _free_ports(k):
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_of_a_multiworker_strategy_give_the_one_process_result(mnist_model, tmp_path):
    """`advkeras attack --strategy multiworker` on two processes of 127.0.0.1 (TF_CONFIG) against one process.

    The chief's folder already holds the first shard (a resumed run) and worker 1's holds nothing: the workers
    must agree on the chief's view (two shards left), or their collectives would not match."""
    model = tmp_path / "lenet.keras"
    mnist_model.save(model)
    cli = [sys.executable, "-c", "from advkeras.cli import main; main()", "attack", "--model", str(model), "--data",
           "mnist", "--attack", "pgd", "--eps", "0.1", "--param", "steps=3", "-n", "40", "--shard-size", "16",
           "--batch-size", "8"]
    one = subprocess.run([*cli, "--strategy", "mirrored", "--out", str(tmp_path / "one")], env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    (tmp_path / "w0" / "shards").mkdir(parents=True)
    for name in ("plan.json", "shard_000000.npz"):
        shutil.copy(tmp_path / "one" / "shards" / name, tmp_path / "w0" / "shards" / name)
    hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    workers = []
    try:
        for i in range(2):
            spec = json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
            workers.append(subprocess.Popen([*cli, "--strategy", "multiworker", "--out", str(tmp_path / f"w{i}")],
                                            env={**_env(), "TF_CONFIG": spec}, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True))
        outs = [w.communicate(timeout=300) for w in workers]
    finally:
        for w in workers:  # a hung collective must not outlive the test
            w.kill()
    assert [w.returncode for w in workers] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert "chief: wrote 2 shard(s)" in outs[0][0] and "worker 0 writes" in outs[1][0]
    assert not (tmp_path / "w1").exists()  # only the chief touches its folder
    a, b = np.load(tmp_path / "one" / "per_image.npz"), np.load(tmp_path / "w0" / "per_image.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_array_equal(merge_shards(tmp_path / "one").clipped, merge_shards(tmp_path / "w0").clipped)
    s1, s2 = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "w0"))
    assert {k: v for k, v in s1.items() if k != "seconds"} == {k: v for k, v in s2.items() if k != "seconds"}
    assert s1["n"] == 40 and 0 < s1["success_rate"] < 1
