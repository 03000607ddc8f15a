"""Compiled attacks and forward passes are cached per model, weakly: alternating models is safe."""
import gc

import numpy as np

from advkeras.attacks import generate
from advkeras.attacks.base import _FORWARD, compiled_forward
from advkeras.attacks.native import _TRACES
from advkeras.models import build_classifier


def test_two_models_attacked_alternately_each_get_their_own_result(mnist_model, correct_digits):
    x, y = correct_digits(200, 24)
    other = build_classifier("lenet", (28, 28, 1), 10, seed=1)  # untrained: different answers, different gradients
    alone = {id(m): generate(m, x, y, "pgd", eps=0.1, backend="native", steps=5, seed=0, progress=False).clipped
             for m in (mnist_model, other)}
    for _ in range(2):
        for m in (other, mnist_model):
            got = generate(m, x, y, "pgd", eps=0.1, backend="native", steps=5, seed=0, progress=False).clipped
            np.testing.assert_array_equal(got, alone[id(m)])
            np.testing.assert_allclose(compiled_forward(m)(x[:4]).numpy(), m(x[:4]).numpy(), atol=1e-5)
    assert not np.array_equal(alone[id(mnist_model)], alone[id(other)])


def test_batches_of_any_size_share_one_trace(mnist_model, correct_digits):
    x, y = correct_digits(200, 20)
    for n in (3, 7, 20):
        generate(mnist_model, x[:n], y[:n], "pgd", eps=0.1, backend="native", steps=3, seed=0, progress=False)
    fn = next(f for k, f in _TRACES._entries[mnist_model].items() if dict(k[1])["steps"] == 3)
    assert fn.experimental_get_tracing_count() == 1


def test_a_deleted_model_frees_its_graphs():
    model = build_classifier("lenet", (28, 28, 1), 10, seed=2)
    x = np.zeros((2, 28, 28, 1), np.float32)
    generate(model, x, np.array([0, 1]), "fgsm", eps=0.1, backend="native", progress=False)
    compiled_forward(model)(x)
    assert model in _TRACES and model in _FORWARD
    ref = __import__("weakref").ref(model)
    del model
    gc.collect()
    gc.collect()
    assert ref() is None
