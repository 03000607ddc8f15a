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


def test_minimal_adversarials_keep_the_adversarial_found_at_each_minimal_eps(mnist_model, mnist_splits):
    from advkeras.attacks import minimal_adversarials
    from advkeras.models import predict_logits

    x, y = mnist_splits[2].x[:32], mnist_splits[2].y[:32]
    found = minimal_adversarials(mnist_model, x, y, "pgd", eps_grid=(0.05, 0.1, 0.2), backend="native",
                                 steps=10, rel_stepsize=0.25, progress=False)
    broken = np.isfinite(found.eps) & (found.eps > 0)
    assert broken.any()
    delta = np.abs(found.x_adv - x).reshape(len(x), -1).max(1)
    assert (delta[broken] <= found.eps[broken] + 1e-6).all()  # inside the ball of its own minimal eps
    assert (predict_logits(mnist_model, found.x_adv[broken]).argmax(1) != y[broken]).all()  # really adversarial
    assert np.allclose(found.l2[broken], np.linalg.norm((found.x_adv - x)[broken].reshape(broken.sum(), -1), axis=1))
    assert (found.l2[found.eps == 0] == 0).all() and np.isinf(found.l2[np.isinf(found.eps)]).all()
