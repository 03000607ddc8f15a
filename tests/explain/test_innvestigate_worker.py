"""The iNNvestigate worker: a spawned graph-mode process, reused across calls, errors back as exceptions."""
import numpy as np
import pytest
import tensorflow as tf

from advkeras.errors import InputError, ModelError
from advkeras.explain.innvestigate_worker import InnvestigateWorker, WorkerError


def test_worker_is_reused_and_parent_stays_eager(mnist_innvestigate_worker, mnist_splits):
    worker = mnist_innvestigate_worker  # started from a .keras file, batches of 4
    x = mnist_splits[2].x[:6]
    pid = worker.pid
    first = worker.analyze(x, "guided_backprop")
    second = worker.analyze(x[:3], "guided_backprop")
    grad = worker.analyze(x[:3], "gradient")
    assert worker.pid == pid and pid is not None and worker._proc.is_alive()
    with pytest.raises(InputError, match="expects"):
        worker.analyze(np.zeros((2, 20, 20, 1), np.float32))
    with pytest.raises(InputError, match="unknown analyzer"):
        worker.analyze(x, "occlusion")
    assert worker.analyze(x[:1]).shape == (1, 28, 28, 1)  # still serving after refused requests
    assert tf.executing_eagerly()
    assert first.shape == x.shape and first.dtype == np.float32 and np.abs(first).sum() > 0
    np.testing.assert_allclose(first[:3], second, rtol=1e-5, atol=1e-7)
    assert not np.allclose(grad, second)


def test_worker_errors_come_back_as_exceptions(tmp_path):
    inp = tf.keras.Input((8, 8, 1))
    out = tf.keras.layers.Dense(2)(tf.keras.layers.Flatten()(tf.keras.layers.Conv2D(2, 3, activation="tanh")(inp)))
    with InnvestigateWorker(tf.keras.Model(inp, out)) as worker:
        with pytest.raises(WorkerError, match="ReLU") as info:
            worker.analyze(np.full((2, 8, 8, 1), 0.5, np.float32), "guided_backprop")
        assert "worker traceback" in str(info.value)
        proc = worker._proc
    assert not proc.is_alive() and worker.pid is None  # the context manager stopped it
    with pytest.raises(WorkerError, match="closed"):
        worker.analyze(np.full((2, 8, 8, 1), 0.5, np.float32))
    with pytest.raises(ModelError, match="does not exist"):
        InnvestigateWorker(tmp_path / "missing.keras")
