"""BPDA and EOT: a defense that only hides its gradient is broken by the attack that knows it."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from advkeras.adaptive import bpda_model, defense_battery, eot_model, is_randomised, purifier_parts
from advkeras.attacks import generate
from advkeras.errors import InputError
from advkeras.models import compose, get_parts


class Quantise(tf.keras.layers.Layer):
    """Rounds pixels to `levels` + 1 grey levels: its gradient is zero almost everywhere (TF: none)."""

    def __init__(self, levels: int = 3, **kwargs):
        super().__init__(name="quantise", **kwargs)
        self.levels = levels

    def call(self, x):
        return tf.round(x * self.levels) / self.levels


class Noise(tf.keras.layers.Layer):
    """Gaussian noise at inference too: a randomised defense."""

    def call(self, x, training=None):
        return tf.clip_by_value(x + tf.random.normal(tf.shape(x), stddev=0.05), 0.0, 1.0)


@pytest.fixture(scope="module")
def quantised(mnist_model):
    cnn, dnn = get_parts(mnist_model)
    return compose(cnn, dnn, before=[Quantise()], name="quantised")


def test_bpda_keeps_answers_and_breaks_a_gradient_masking_defense(quantised, correct_digits):
    x, y = correct_digits(400, 96)
    keep = np.argmax(quantised(x), 1) == y
    x, y = x[keep], y[keep]
    assert purifier_parts(quantised) == ["quantise"]
    view = bpda_model(quantised)
    np.testing.assert_array_equal(view(x).numpy(), quantised(x).numpy())  # forward unchanged, bit for bit
    plain = generate(quantised, x, y, "pgd", eps=0.25, backend="native", steps=20, seed=0, progress=False)
    through = generate(view, x, y, "pgd", eps=0.25, backend="native", steps=20, seed=0, progress=False)
    fooled_plain = (np.argmax(quantised(plain.clipped), 1) != y).mean()
    fooled_bpda = (np.argmax(quantised(through.clipped), 1) != y).mean()
    # Plain PGD sees a zero gradient and only keeps its random start; BPDA follows the classifier's gradient.
    assert fooled_bpda > fooled_plain + 0.3, (fooled_plain, fooled_bpda)


def test_battery_worst_case_includes_bpda(quantised, correct_digits):
    x, y = correct_digits(200, 48)
    runs = defense_battery(quantised, x, y, 0.25, steps=10, restarts=1, square_iterations=0, seed=0)
    kinds = {r["kind"]: r["success"] for r in runs.values()}
    assert set(kinds) == {"white-box", "bpda"}
    assert kinds["bpda"] > kinds["white-box"]
    assert all(r["n"] == runs[next(iter(runs))]["n"] > 0 for r in runs.values())


def test_bpda_refuses_models_without_a_part_to_bypass(mnist_model):
    with pytest.raises(InputError, match="no part to bypass"):
        bpda_model(mnist_model)
    with pytest.raises(InputError, match="no top-level layer 'nope'"):
        bpda_model(mnist_model, parts=["nope"])


def test_eot_detects_and_averages_a_randomised_model(mnist_model, correct_digits):
    cnn, dnn = get_parts(mnist_model)
    noisy = compose(cnn, dnn, before=[Noise()], name="noisy")
    x, _ = correct_digits(50, 16)
    assert is_randomised(noisy, x) and not is_randomised(mnist_model, x)
    view = eot_model(noisy, samples=16)
    spread_one = np.std([noisy(x[:4]).numpy() for _ in range(6)], axis=0).mean()
    spread_eot = np.std([view(x[:4]).numpy() for _ in range(6)], axis=0).mean()
    assert spread_eot < spread_one / 2  # the mean of 16 draws varies about 4x less
    with pytest.raises(InputError, match="at least 2 draws"):
        eot_model(noisy, samples=1)
    runs = defense_battery(noisy, x, np.argmax(mnist_model(x), 1), 0.1, steps=5, restarts=1, eot_samples=4,
                           square_iterations=0)
    assert {r["kind"] for r in runs.values()} == {"white-box", "eot"}
    assert any("EOT over 4 draws" in label for label in runs)
