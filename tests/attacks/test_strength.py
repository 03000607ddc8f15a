"""Full-strength defaults of the iterative Linf attacks (step rule, margin loss, restarts) and the
promise that attacks leave the caller's global random state as they found it."""
import random

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.eager import context

from advkeras.attacks import NativePGD, generate, get_attack, linf_pgd
from advkeras.errors import InputError

OLD_FOOLBOX_STEP = 0.01 / 0.3  # foolbox's LinfPGD default: eps / 30 whatever the step count


@pytest.fixture(scope="module")
def digits(correct_digits):
    return correct_digits(48, 32)


@pytest.fixture(scope="module")
def confident_model(mnist_model):
    """The MNIST LeNet with logits scaled by 1000: same decisions, float32 softmax saturated."""
    return tf.keras.Sequential([mnist_model, tf.keras.layers.Rescaling(1000.0)])


@pytest.mark.parametrize("backend", ["native", "foolbox"])
def test_pgd_steps_default_to_two_and_a_half_eps_in_all(mnist_model, digits, backend):
    x, y = digits
    run = dict(eps=0.1, backend=backend, steps=10, progress=False)
    default = generate(mnist_model, x, y, "pgd", **run)
    explicit = generate(mnist_model, x, y, "pgd", rel_stepsize=2.5 / 10, **run)
    old = generate(mnist_model, x, y, "pgd", rel_stepsize=OLD_FOOLBOX_STEP, **run)
    assert default.params["rel_stepsize"] == pytest.approx(0.25)  # the step used is what reports show
    assert np.array_equal(default.clipped, explicit.clipped)
    # 10 steps of eps/30 cannot leave a third of the ball; measured 0.22 vs 0.52 on 64 digits.
    assert default.success_rate > old.success_rate


@pytest.mark.parametrize("backend,attack", [("native", "bim"), ("foolbox", "bim"), ("native", "pgd"),
                                            ("foolbox", "pgd"), ("art", "pgd")])
def test_iterative_attacks_record_the_step_they_use(backend, attack):
    if backend == "art":
        pytest.importorskip("art")
    default = get_attack(attack, backend)
    assert default.params["steps"] == (10 if attack == "bim" else 40)
    assert default.params["rel_stepsize"] == pytest.approx(2.5 / default.params["steps"])
    assert get_attack(attack, backend, steps=5).params["rel_stepsize"] == pytest.approx(0.5)
    assert get_attack(attack, backend, steps=5, rel_stepsize=0.1).params["rel_stepsize"] == 0.1
    if backend == "native":
        assert get_attack("fgsm", backend).params["rel_stepsize"] == 1.0  # FGSM: one step of eps, as before


def test_margin_loss_breaks_saturated_logits_where_cross_entropy_stalls(confident_model, digits):
    x, y = digits
    run = dict(eps=0.1, backend="native", steps=10, progress=False)
    ce = generate(confident_model, x, y, "pgd", loss="ce", **run)
    margin = generate(confident_model, x, y, "pgd", loss="margin", **run)
    assert margin.params["loss"] == "margin"
    # Saturated cross-entropy has zero gradient: only the random start moves the images.
    assert margin.success_rate >= ce.success_rate + 0.2, (ce.success_rate, margin.success_rate)
    targeted = generate(confident_model, x, y, "bim", loss="margin", target=(y + 1) % 10, eps=0.3,
                        backend="native", progress=False)
    assert (targeted.pred_adv[targeted.success] == ((y + 1) % 10)[targeted.success]).all()
    assert targeted.success_rate > 0.5


def _margin(model, x, y):
    logits = np.array(model(x))
    true = logits[np.arange(len(y)), y]
    logits[np.arange(len(y)), y] = -np.inf
    return logits.max(1) - true


def test_restarts_keep_every_break_of_one_start_and_repeat_for_a_seed(mnist_model, digits):
    x, y = digits
    run = dict(eps=0.05, backend="native", steps=5, loss="margin", progress=False)
    one = generate(mnist_model, x, y, "pgd", restarts=1, **run)
    three = generate(mnist_model, x, y, "pgd", restarts=3, **run)
    again = generate(mnist_model, x, y, "pgd", restarts=3, **run)
    other_seed = generate(mnist_model, x, y, "pgd", restarts=3, seed=1, **run)
    assert (three.success >= one.success).all() and three.params["restarts"] == 3
    assert np.array_equal(three.clipped, again.clipped) and not np.array_equal(three.clipped, other_seed.clipped)
    assert np.array_equal(three.clipped[one.success], one.clipped[one.success])  # the first success is kept
    lost = ~three.success
    assert lost.any()  # otherwise the "highest loss" rule below is untested
    assert (_margin(mnist_model, three.clipped[lost], y[lost]) >= _margin(mnist_model, one.clipped[lost], y[lost])
            - 1e-5).all()
    assert three.linf.max() <= 0.05 + 1e-6


def test_native_attacks_run_under_op_determinism(mnist_model, digits):
    x, y = digits[0][:8], digits[1][:8]
    from tensorflow.python.framework import config  # TF 2.14 has no public getter or switch-off

    previous, was_on = context.global_seed(), config.is_op_determinism_enabled()
    tf.random.set_seed(None)  # TF refuses unseeded random ops under determinism only without a global seed
    tf.config.experimental.enable_op_determinism()
    try:
        first = linf_pgd(mnist_model, x, y, 0.1, steps=2, step_size=0.05, random_start=True)
        again = linf_pgd(mnist_model, x, y, 0.1, steps=2, step_size=0.05, random_start=True, loss="margin")
        res = generate(mnist_model, x, y, "pgd", eps=0.1, backend="native", steps=3, restarts=2, progress=False)
    finally:
        if not was_on:
            config.disable_op_determinism()
        tf.random.set_seed(previous)
    assert np.abs(first.numpy() - x).max() <= 0.1 + 1e-6 and np.abs(again.numpy() - x).max() <= 0.1 + 1e-6
    assert res.linf.max() <= 0.1 + 1e-6


@pytest.fixture
def caller_random_state():
    """Seed the caller's generators (Python, numpy, TF) to known values; unseed TF after the test."""
    random.seed(11)
    np.random.seed(12)
    tf.random.set_seed(13)
    yield
    tf.random.set_seed(None)


@pytest.mark.parametrize("backend,attack,params", [
    ("native", "pgd", {"steps": 2, "restarts": 2}),
    ("foolbox", "pgd", {"steps": 2}),
    ("foolbox", "boundary", {"steps": 5}),
    ("foolbox", "hopskipjump", {"steps": 1, "initial_gradient_eval_steps": 5, "max_gradient_eval_steps": 5}),
    ("art", "pgd", {"steps": 2})])
def test_attacks_leave_the_global_random_state_alone(mnist_model, digits, caller_random_state, backend, attack,
                                                     params):
    if backend == "art":
        pytest.importorskip("art")
    x, y = digits[0][:4], digits[1][:4]
    py_state, np_state = random.getstate(), np.random.get_state()
    eps = None if attack in ("boundary", "hopskipjump") else 0.1
    res = generate(mnist_model, x, y, attack, eps=eps, backend=backend, progress=False, seed=5, **params)
    again = generate(mnist_model, x, y, attack, eps=eps, backend=backend, progress=False, seed=5, **params)
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert context.global_seed() == 13
    assert np.array_equal(res.clipped, again.clipped)  # seeded for the call: deterministic for a seed


def test_global_random_state_survives_an_attack_between_two_draws(mnist_model, digits, caller_random_state):
    x, y = digits[0][:4], digits[1][:4]
    reference = (tf.random.uniform([3]).numpy(), tf.random.uniform([3]).numpy(),
                 np.random.rand(3), random.random())
    random.seed(11)
    np.random.seed(12)
    tf.random.set_seed(13)
    first = tf.random.uniform([3]).numpy()
    generate(mnist_model, x, y, "pgd", eps=0.1, backend="foolbox", steps=2, progress=False, seed=5)
    assert np.array_equal(first, reference[0]) and np.array_equal(tf.random.uniform([3]).numpy(), reference[1])
    assert np.array_equal(np.random.rand(3), reference[2]) and random.random() == reference[3]


def test_bad_loss_and_restarts_name_the_fix(mnist_model, digits):
    x, y = digits[0][:2], digits[1][:2]
    with pytest.raises(InputError, match="loss='ce'.*loss='margin'"):
        generate(mnist_model, x, y, "pgd", eps=0.1, backend="native", loss="foo")
    with pytest.raises(InputError, match="restarts=0 .*>= 1"):
        NativePGD(restarts=0)
    with pytest.raises(InputError, match="random_start=True"):
        NativePGD(restarts=3, random_start=False)
    with pytest.raises(InputError, match="loss='margin'"):
        linf_pgd(mnist_model, x, y, 0.1, steps=1, step_size=0.1, random_start=False, loss="hinge")
    with pytest.raises(InputError, match="steps must be at least 1"):
        get_attack("pgd", "foolbox", steps=0)
