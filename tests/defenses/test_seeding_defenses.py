"""Every defense builder: the caller's global random state untouched, no global TF seed, and the same
weights from the same seed in two fresh processes under op determinism."""
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tensorflow.python.eager import context

# A tiny grey task, a LeNet trained on it for one epoch, and small settings for every builder.
SETUP = textwrap.dedent("""
    import numpy as np
    from advkeras.data.dataset import Dataset
    from advkeras.models import build_classifier, train_classifier
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(40, 16, 16, 1)).astype(np.float32)
    y = (x[:, :8].mean((1, 2, 3)) > x[:, 8:].mean((1, 2, 3))).astype(int)
    train = Dataset(x[:32], y[:32], None, ["a", "b"], "toy")
    val = Dataset(x[32:], y[32:], None, ["a", "b"], "toy")
    model = build_classifier("lenet", (16, 16, 1), 2, head=(8,), seed=0)
    train_classifier(model, train, val, epochs=1, batch_size=8, seed=0)
    PARAMS = {
        "middle-ae": {"epochs": 2, "code_size": 4, "hidden": (8,)},
        "encoder": {"epochs": 2, "code_size": 4, "hidden": (8,)},
        "initial-ae": {"epochs": 2, "filters": (4, 2)},
        "adversarial-training": {"attacks": ["fgsm"], "epochs": 1, "batch_size": 8, "from_scratch": True},
        "pgd-training": {"steps": 2, "epochs": 1, "batch_size": 8, "from_scratch": True, "progress": False},
    }
""")
NAMES = ("middle-ae", "encoder", "initial-ae", "adversarial-training", "pgd-training")
_env: dict = {}


@pytest.fixture(scope="module")
def toy():
    if not _env:
        exec(SETUP, _env)
    return _env


@pytest.mark.parametrize("name", NAMES)
def test_builders_leave_global_random_state_and_tf_seed_alone(toy, name):
    from advkeras.defenses import build_defense

    py, npy = random.getstate(), np.random.get_state()
    build_defense(name, toy["model"], toy["train"], toy["val"], seed=0, **toy["PARAMS"][name])
    assert random.getstate() == py
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), npy))
    assert context.global_seed() is None


_SCRIPT = SETUP + textwrap.dedent("""
    import hashlib
    from advkeras.defenses import build_defense
    from advkeras.seeding import deterministic_ops
    assert deterministic_ops()
    for name, params in PARAMS.items():
        result = build_defense(name, model, train, val, seed=0, **params)
        print(name, hashlib.sha256(b"".join(w.tobytes() for w in result.model.get_weights())).hexdigest())
""")


def test_every_defense_repeats_exactly_across_processes_under_op_determinism():
    # Op determinism makes TF refuse unseeded random ops, so this also proves every builder seeds its own.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    runs = [subprocess.Popen([sys.executable, "-c", _SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env) for _ in range(2)]
    outs = [run.communicate(timeout=600) for run in runs]
    for run, (_, err) in zip(runs, outs):
        assert run.returncode == 0, err[-3000:]
    hashes = [[line for line in out.splitlines() if line.split(" ")[0] in NAMES] for out, _ in outs]
    assert len(hashes[0]) == len(NAMES) and hashes[0] == hashes[1]
