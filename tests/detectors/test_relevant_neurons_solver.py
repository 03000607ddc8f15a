"""mu-Lasso solver: L1-ball projection and SPG against exact references (LARS homotopy, SLSQP)."""
import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.linear_model import lars_path

from advkeras.detectors.relevant_neurons import mu_lasso, project_l1_ball, relevant_mask
from advkeras.errors import InputError


def lars_reference(A, b, mu):
    """Exact constrained solution: the lasso path is piecewise linear, so interpolate where ||w||_1 = mu."""
    _, _, coefs = lars_path(A, b, method="lasso")
    norms = np.abs(coefs).sum(0)
    k = int(np.searchsorted(norms, mu))
    if k >= len(norms):
        return coefs[:, -1]
    t = (mu - norms[k - 1]) / (norms[k] - norms[k - 1])
    return coefs[:, k - 1] + t * (coefs[:, k] - coefs[:, k - 1])


def slsqp_reference(A, b, mu, positive=False):
    """w = u - v with u, v >= 0 and sum(u + v) <= mu, solved by SciPy's SLSQP."""
    m = A.shape[1]
    fun = lambda z: np.sum((A @ (z[:m] - z[m:]) - b) ** 2)  # noqa: E731
    jac = lambda z: np.r_[1, -1][:, None].repeat(m, 1).ravel() * np.tile(2 * A.T @ (A @ (z[:m] - z[m:]) - b), 2)  # noqa: E731
    bounds = [(0, None)] * m + [(0, 0 if positive else None)] * m
    cons = [{"type": "ineq", "fun": lambda z: mu - z.sum(), "jac": lambda z: -np.ones(2 * m)}]
    z = minimize(fun, np.zeros(2 * m), jac=jac, bounds=bounds, constraints=cons, method="SLSQP",
                 options={"ftol": 1e-14, "maxiter": 2000}).x
    return z[:m] - z[m:]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    m, n, c = 15, 60, 3
    X = rng.normal(size=(m, n))
    X[3] = X[2] + 0.01 * rng.normal(size=n)  # nearly collinear neurons, as in real layers
    return X, np.eye(c)[rng.integers(0, c, n)]


@pytest.mark.parametrize("mu", [0.2, 0.8, 2.0])
def test_objective_matches_lars_and_slsqp(problem, mu):
    X, L = problem
    res = mu_lasso(X, L, mu, tol=1e-8)
    assert res.converged
    for j in range(L.shape[1]):
        ref = lars_reference(X.T, L[:, j], mu)
        f_ref = np.sum((X.T @ ref - L[:, j]) ** 2)
        assert abs(res.objective[j] - f_ref) <= 1e-4 * f_ref
        assert np.abs(res.W[:, j]).sum() <= mu * (1 + 1e-9)
        f_slsqp = np.sum((X.T @ slsqp_reference(X.T, L[:, j], mu) - L[:, j]) ** 2)
        assert res.objective[j] <= f_slsqp * (1 + 1e-4)
    # the gap is a certificate: the true objective error is no larger
    assert np.all(res.gap <= 1e-8 * res.objective + 1e-12)


def test_gram_and_matrix_free_agree(problem):
    X, L = problem
    a = mu_lasso(X, L, 0.8, gram=True, tol=1e-9)
    b = mu_lasso(X, L, 0.8, gram=False, tol=1e-9)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-6)


def test_positive_variant_matches_slsqp(problem):
    X, L = problem
    res = mu_lasso(X, L, 0.8, positive=True, tol=1e-8)
    assert res.W.min() >= 0 and res.converged
    ref = slsqp_reference(X.T, L[:, 0], 0.8, positive=True)
    f_ref = np.sum((X.T @ ref - L[:, 0]) ** 2)
    assert res.objective[0] <= f_ref * (1 + 1e-4)


def test_inactive_constraint_gives_least_squares(problem):
    X, L = problem
    ls = np.linalg.lstsq(X.T, L, rcond=None)[0]
    res = mu_lasso(X, L, 10 * np.abs(ls).sum(0).max(), tol=1e-7)
    np.testing.assert_allclose(res.objective, ((X.T @ ls - L) ** 2).sum(0), rtol=1e-5)


def test_projection_onto_l1_ball():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(30, 5)) * 3
    p = project_l1_ball(v, 2.0)
    np.testing.assert_allclose(np.abs(p).sum(0), 2.0)
    # optimality of a projection: <v - p, q - p> <= 0 for feasible q (here: random points of the ball)
    for _ in range(20):
        q = project_l1_ball(rng.normal(size=(30, 5)) * 3, 2.0)
        assert np.all(((v - p) * (q - p)).sum(0) <= 1e-9)
    inside = v / np.abs(v).sum(0) * 0.5
    np.testing.assert_allclose(project_l1_ball(inside, 2.0), inside)
    pos = project_l1_ball(v, 2.0, positive=True)
    assert pos.min() >= 0 and np.all(pos.sum(0) <= 2.0 + 1e-12)


def test_smaller_mu_selects_fewer_neurons(problem):
    X, L = problem
    counts = [relevant_mask(mu_lasso(X, L, mu).W).sum() for mu in (0.1, 0.5, 2.0)]
    assert counts[0] < counts[1] < counts[2]


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="features x samples"):
        mu_lasso(np.zeros((3, 4)), np.zeros((5, 2)), 1.0)
    with pytest.raises(InputError, match="mu must be positive"):
        mu_lasso(np.zeros((3, 4)), np.zeros((4, 2)), 0.0)
    with pytest.raises(InputError, match="finite"):
        mu_lasso(np.full((3, 4), np.nan), np.zeros((4, 2)), 1.0)
