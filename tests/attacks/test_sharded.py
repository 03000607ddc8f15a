"""Sharded attacks: the same per-image results whatever the number of workers, and after an interruption."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import advkeras.attacks.sharded as sharded
from advkeras.attacks.sharded import merge_per_image, merge_shards, missing_shards, run_shards, shard_slices, worker_from_tf_config
from advkeras.cli import main
from advkeras.errors import InputError

FIELDS = ("x", "y", "clipped", "raw", "success", "pred_clean", "pred_adv")


def _same(a, b):
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


@pytest.fixture(scope="module")
def digits(mnist_splits):
    test = mnist_splits[2]
    return test.x[:50], test.y[:50]


def test_two_workers_give_exactly_the_one_worker_result(mnist_model, digits, tmp_path):
    x, y = digits
    kw = dict(eps=0.1, backend="native", shard_size=16, seed=3, progress=False, steps=5)
    run_shards(mnist_model, x, y, "pgd", tmp_path / "one", **kw)
    for w in (1, 0):  # any order
        run_shards(mnist_model, x, y, "pgd", tmp_path / "two", worker=w, workers=2, **kw)
    one, two = merge_shards(tmp_path / "one"), merge_shards(tmp_path / "two")
    _same(one, two)
    assert len(one.y) == 50 and one.success.any() and not one.success.all()
    np.testing.assert_array_equal(one.x, x)  # rows in the set's order
    per_image, summary = merge_per_image(tmp_path / "two")  # shard by shard, without the images
    assert summary == two.summary() and set(per_image) == {"y", "success", "pred_clean", "pred_adv", "l2", "linf"}
    np.testing.assert_array_equal(per_image["linf"], one.linf)


def test_an_interrupted_run_resumes_without_redoing_finished_shards(mnist_model, digits, tmp_path, monkeypatch):
    x, y = digits
    kw = dict(eps=0.1, backend="native", shard_size=10, seed=0, progress=False, steps=5)
    run_shards(mnist_model, x, y, "pgd", tmp_path / "whole", **kw)
    real, calls = sharded.generate, []

    def dies_on_third(*args, **kwargs):
        calls.append(kwargs["seed"])
        if len(calls) == 3:
            raise KeyboardInterrupt  # the worker is killed while attacking its third shard
        return real(*args, **kwargs)

    monkeypatch.setattr(sharded, "generate", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_shards(mnist_model, x, y, "pgd", tmp_path / "cut", **kw)
    assert missing_shards(tmp_path / "cut") == [2, 3, 4]
    (tmp_path / "cut" / "shards" / ".shard_000002.999.tmp.npz").write_bytes(b"half a file")  # a torn write
    with pytest.raises(InputError, match="3 of 5 shards are not done"):
        merge_shards(tmp_path / "cut")
    monkeypatch.setattr(sharded, "generate", real)
    assert run_shards(mnist_model, x, y, "pgd", tmp_path / "cut", **kw) == [2, 3, 4]
    _same(merge_shards(tmp_path / "cut"), merge_shards(tmp_path / "whole"))


def test_plans_and_worker_specs_are_checked(mnist_model, digits, tmp_path):
    x, y = digits
    run_shards(mnist_model, x[:8], y[:8], "fgsm", tmp_path, eps=0.1, backend="native", shard_size=4, progress=False)
    with pytest.raises(InputError, match="another run .*eps"):
        run_shards(mnist_model, x[:8], y[:8], "fgsm", tmp_path, eps=0.2, backend="native", shard_size=4,
                   progress=False, plan={"eps": 0.2})
    with pytest.raises(InputError, match="outside 0..1"):
        run_shards(mnist_model, x, y, "fgsm", tmp_path / "w", worker=2, workers=2, eps=0.1)
    assert [s.stop for s in shard_slices(10, 4)] == [4, 8, 10]
    spec = {"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}, "task": {"type": "worker", "index": 1}}
    assert worker_from_tf_config(json.dumps(spec)) == (1, 2) and worker_from_tf_config("") == (0, 1)
    with pytest.raises(InputError, match="TF_CONFIG"):
        worker_from_tf_config("{not json")


def test_cli_workers_share_the_shards_and_the_last_one_merges(mnist_model, tmp_path):
    model = tmp_path / "lenet.keras"
    mnist_model.save(model)
    base = ["attack", "--model", model, "--data", "mnist", "--attack", "fgsm", "--backend", "native", "--eps", "0.1",
            "-n", "40", "--shard-size", "16"]
    outputs = {}
    for name, workers in (("one", [None]), ("two", [0, 1])):
        for w in workers:
            extra = [] if w is None else ["--worker", w, "--workers", 2]
            res = CliRunner().invoke(main, [str(a) for a in [*base, *extra, "--out", tmp_path / name]])
            assert res.exit_code == 0, res.output
        outputs[name] = json.loads((tmp_path / name / "summary.json").read_text())
    assert "waiting for shard(s)" in res.output or "success" in res.output
    drop = ("seconds",)
    assert {k: v for k, v in outputs["one"].items() if k not in drop} == \
        {k: v for k, v in outputs["two"].items() if k not in drop}
    assert outputs["one"]["n"] == 40 and outputs["one"]["shards"] == 3
    again = CliRunner().invoke(main, [str(a) for a in [*base[:-1], "8", "--out", tmp_path / "one"]])
    assert again.exit_code != 0 and "another run" in again.output
