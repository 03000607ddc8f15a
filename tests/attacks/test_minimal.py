import numpy as np
import pytest

from advkeras.attacks import generate, minimal_eps
from advkeras.errors import InputError


def test_minimal_eps_is_the_first_grid_eps_that_breaks_each_sample(mnist_model, mnist_splits):
    test = mnist_splits[2]
    x, y = test.x[:24], test.y[:24]
    grid = (0.02, 0.05, 0.1, 0.2)
    m = minimal_eps(mnist_model, x, y, "fgsm", eps_grid=grid, backend="native", progress=False)
    assert m.shape == (24,) and set(np.unique(m)) <= {0.0, np.inf, *grid}
    wrong = np.argmax(mnist_model(x), 1) != y
    assert (m[wrong] == 0).all() and (m[~wrong] > 0).all()
    # FGSM without random start is deterministic, so each grid eps can be checked directly.
    for eps in grid:
        res = generate(mnist_model, x, y, "fgsm", eps=eps, backend="native", progress=False)
        broken_here = res.success & ~wrong
        assert (m[broken_here] <= eps).all()
        assert ((m == eps) <= broken_here).all()
    assert np.isfinite(m).any()


def test_minimal_eps_rejects_a_bad_grid(mnist_model, mnist_splits):
    x, y = mnist_splits[2].x[:2], mnist_splits[2].y[:2]
    with pytest.raises(InputError, match="eps_grid"):
        minimal_eps(mnist_model, x, y, "fgsm", eps_grid=(0.0, 2.0))
