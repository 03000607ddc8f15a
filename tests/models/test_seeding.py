"""Same seed, same numbers; the caller's global random state untouched (DESIGN.md, "Evaluating honestly")."""
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.eager import context

from advkeras.data.dataset import Dataset
from advkeras.errors import ModelError
from advkeras.models import build_classifier, train_classifier
from advkeras.models.training import make_pipeline
from advkeras.seeding import derive_seed, preserved_global_rng, seed_weights

# A tiny colour task (square images, so training with augment=True runs every augmentation op).
TOY = textwrap.dedent("""
    import numpy as np
    from advkeras.data.dataset import Dataset
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(40, 16, 16, 3)).astype(np.float32)
    y = (x[..., 0].mean((1, 2)) > x[..., 2].mean((1, 2))).astype(int)
    train = Dataset(x[:32], y[:32], None, ["a", "b"], "toy")
    val = Dataset(x[32:], y[32:], None, ["a", "b"], "toy")
""")
_toy: dict = {}
exec(TOY, _toy)
TRAIN, VAL = _toy["train"], _toy["val"]


def _trained(seed: int) -> tf.keras.Model:
    model = build_classifier("vgg_mini", (16, 16, 3), 2, head=(8,), seed=seed)
    train_classifier(model, TRAIN, VAL, epochs=2, batch_size=8, augment=True, seed=seed)
    return model


def _same(a: tf.keras.Model, b: tf.keras.Model) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def _global_state() -> tuple:
    return random.getstate(), np.random.get_state()


def _assert_state(before: tuple) -> None:
    assert random.getstate() == before[0], "Python's global random state moved"
    after = np.random.get_state()
    assert all(np.array_equal(u, v) for u, v in zip(after, before[1])), "numpy's global random state moved"


def test_same_seed_same_weights_and_other_seeds_differ():
    first, again, other = _trained(3), _trained(3), _trained(4)
    assert _same(first, again)
    assert not _same(first, other)


def test_initial_weights_depend_on_the_seed_only():
    a = build_classifier("lenet", (28, 28, 1), 10, seed=5)
    tf.keras.layers.Dense(3).build((None, 2))  # unseeded Keras work in between must not matter
    random.random()
    b = build_classifier("lenet", (28, 28, 1), 10, seed=5)
    assert _same(a, b)
    assert not _same(a, build_classifier("lenet", (28, 28, 1), 10, seed=6))


def test_augmented_pipeline_repeats_with_its_seed():
    def batches(seed):
        return [x.numpy() for x, _ in make_pipeline(TRAIN, batch_size=8, shuffle=True, augment=True, seed=seed)]

    first, again, other = batches(1), batches(1), batches(2)
    assert all(np.array_equal(u, v) for u, v in zip(first, again))
    assert not all(np.array_equal(u, v) for u, v in zip(first, other))
    pipe = make_pipeline(TRAIN, batch_size=8, shuffle=True, augment=True, seed=1)
    epoch1, epoch2 = ([x.numpy() for x, _ in pipe] for _ in range(2))
    assert not all(np.array_equal(u, v) for u, v in zip(epoch1, epoch2))  # new order and draws each epoch


def test_build_and_train_leave_global_random_state_and_tf_seed_alone():
    before = _global_state()
    model = build_classifier("vgg_mini", (16, 16, 3), 2, head=(8,), seed=0)
    _assert_state(before)
    build_classifier("lenet", (28, 28, 1), 10)  # seed=None draws a fresh seed, from the OS, not the globals
    _assert_state(before)
    train_classifier(model, TRAIN, VAL, epochs=1, batch_size=8, augment=True, seed=0)
    _assert_state(before)
    assert context.global_seed() is None


def test_preserved_global_rng_restores_on_error():
    before = _global_state()
    with pytest.raises(RuntimeError), preserved_global_rng():
        random.random(), np.random.uniform()
        raise RuntimeError
    _assert_state(before)


def test_seed_weights_refuses_a_variable_it_cannot_seed():
    class Scale(tf.keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight("w", shape[-1:], initializer=lambda s, dtype=None: tf.ones(s, dtype))

    layer = Scale()
    layer.build((None, 3))
    with pytest.raises(ModelError, match="cannot seed"):
        seed_weights(layer, 0)


def test_derived_seeds_are_stable():
    assert derive_seed(0, "a") == derive_seed(0, "a") != derive_seed(0, "b")
    assert derive_seed(0, "a") == 502515194  # the same in every process and on every machine


# Build and train in two fresh processes under op determinism with no global seed: identical weights.
# (Under op determinism TF refuses any unseeded random op, so this also proves none is left.)
_SCRIPT = TOY + textwrap.dedent("""
    import hashlib
    import tensorflow as tf
    from advkeras.models import build_classifier, train_classifier
    from advkeras.seeding import deterministic_ops
    assert deterministic_ops()
    try:
        tf.random.uniform([1])
        raise SystemExit("op determinism is not on: an unseeded random op ran")
    except RuntimeError:
        pass
    model = build_classifier("vgg_mini", (16, 16, 3), 2, head=(8,), seed=7)
    train_classifier(model, train, val, epochs=2, batch_size=8, augment=True, seed=7)
    print(hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest())
""")


def test_training_repeats_exactly_across_processes():
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    runs = [subprocess.Popen([sys.executable, "-c", _SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, **env}) for _ in range(2)]
    outs = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outs):
        assert run.returncode == 0, err[-3000:]
    hashes = [out.strip().splitlines()[-1] for out, _ in outs]
    assert hashes[0] == hashes[1]
