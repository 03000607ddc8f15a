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


def ill_conditioned(seed=0, m=40, n=60, c=3):
    """Descriptor-like data: non-negative, a few dead neurons, near-collinear pairs (Gram condition
    number ~1e8), where projected gradient alone crawls."""
    rng = np.random.default_rng(seed)
    X = np.abs(rng.normal(size=(m, 5)) @ rng.normal(size=(5, n)) + 0.3 * rng.normal(size=(m, n)))
    X[:3] = 0.0                                      # dead neurons
    X[10:15] = X[5:10] + 1e-4 * rng.normal(size=(5, n))
    X /= np.linalg.norm(X, axis=0, keepdims=True)
    return X, np.eye(c)[rng.integers(0, c, n)]


@pytest.mark.parametrize("mu", [1.0, 5.0, 50.0])
def test_converges_to_the_gap_tolerance(mu):
    X, L = ill_conditioned()
    tol = 1e-6
    res = mu_lasso(X, L, mu, tol=tol, max_iter=50)
    assert res.converged
    assert np.all(res.relative_gap <= tol) and res.n_iter.shape == (L.shape[1],)
    assert np.all(np.abs(res.W).sum(0) <= mu * (1 + 1e-9))
    # the certificate holds: no feasible point is better than objective - gap
    for j in range(L.shape[1]):
        ref = lars_reference(X.T, L[:, j], mu)
        f_ref = np.sum((X.T @ ref - L[:, j]) ** 2)
        assert res.objective[j] - res.gap[j] <= f_ref * (1 + 1e-9) + 1e-12
        assert res.objective[j] <= f_ref + tol * max(f_ref, 1e-2 * L[:, j].sum()) + 1e-12
    # projected gradient alone does not get there in as many iterations on this problem
    assert not mu_lasso(X, L, mu, tol=tol, max_iter=50, working_set=False).converged or mu == 1.0


def test_matches_sklearn_lasso_at_the_matched_penalty():
    from sklearn.linear_model import Lasso

    X, L = ill_conditioned(seed=1, m=30, n=80)
    res = mu_lasso(X, L, 3.0, tol=1e-8)
    n = X.shape[1]
    for j in range(L.shape[1]):
        # KKT: the constrained solution solves the penalised lasso at alpha = ||X r||_inf / n
        alpha = np.abs(X @ (X.T @ res.W[:, j] - L[:, j])).max() / n
        w = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=100000).fit(X.T, L[:, j]).coef_
        f_sk = np.sum((X.T @ w - L[:, j]) ** 2)
        assert abs(res.objective[j] - f_sk) <= 1e-4 * f_sk
        assert res.objective[j] <= f_sk * (1 + 1e-8)
        np.testing.assert_allclose(np.abs(res.W[:, j]).sum(), 3.0, rtol=1e-9)
        big = np.abs(w) > 1e-3 * np.abs(w).max()
        assert np.array_equal(big, np.abs(res.W[:, j]) > 1e-3 * np.abs(res.W[:, j]).max())


def test_growing_working_sets_reach_the_full_solution():
    rng = np.random.default_rng(2)
    X = np.abs(rng.normal(size=(120, 200)))
    L = np.eye(4)[rng.integers(0, 4, 200)]
    full = mu_lasso(X, L, 2.0, tol=1e-9, ws_start=120)
    small = mu_lasso(X, L, 2.0, tol=1e-9, ws_start=2, max_iter=0)  # from 2 neurons, no SPG: must add violators
    assert small.converged and small.n_iter.min() >= 2
    np.testing.assert_allclose(small.objective, full.objective, rtol=1e-8)
    np.testing.assert_allclose(small.W, full.W, atol=1e-6)


def test_more_neurons_than_samples_converges():
    X, L = ill_conditioned(seed=3, m=120, n=30)      # IDC-like: near-exact fits are possible
    for mu in (5.0, 50.0):
        res = mu_lasso(X, L, mu, tol=1e-4, max_iter=20)
        assert res.converged and np.all(res.relative_gap <= 1e-4)
