"""mu-Lasso: W* = argmin ||X^T W - L^T||^2 subject to ||w_j||_1 <= mu for every class j.

Two stages, both stopped on the duality gap, which bounds the distance to the optimum: f(w) - f* <= gap.

1. Working sets (default): each class is solved exactly on a small set of neurons by the LARS-lasso
   homotopy (scikit-learn's `lars_path_gram` on that set's Gram block), read off the piecewise-linear
   path where ||w||_1 = mu; one matrix-free product X r over all neurons then gives the gap and the
   neurons that violate the optimality conditions, which join the set (as in BLITZ / celer).
   The full Gram matrix X X^T is formed only for small layers (up to 16 x `ws_start` neurons, one
   LARS path per class on all of them), so large layers cost a few products with X and small Gram
   blocks.
2. Fallback for classes still above the tolerance (a truncated path on a degenerate block): spectral
   projected gradient (Birgin, Martinez & Raydan; the inner solver of SPGL1), warm-started from
   stage 1: Barzilai-Borwein steps, a non-monotone Armijo line search, Euclidean projection onto the
   L1 ball (Duchi et al. 2008) and a periodic subspace step on the current support.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import lars_path_gram

from advkeras.errors import InputError


def project_l1_ball(v: np.ndarray, mu: float | np.ndarray, positive: bool = False) -> np.ndarray:
    """Euclidean projection of each column of `v` (m,) or (m, C) onto {w : ||w||_1 <= mu}
    (and w >= 0 when `positive`). Sort-based, O(m log m) per column."""
    v = np.asarray(v, dtype=np.float64)
    vec = v.ndim == 1
    v2 = v[:, None] if vec else v
    a = np.maximum(v2, 0.0) if positive else np.abs(v2)
    mu = np.broadcast_to(np.asarray(mu, dtype=np.float64), (v2.shape[1],))
    inside = a.sum(0) <= mu
    u = -np.sort(-a, axis=0)                       # descending
    css = np.cumsum(u, axis=0) - mu                # cumulative sums minus the radius
    j = np.arange(1, len(u) + 1)[:, None]
    rho = np.maximum((u - css / j > 0).sum(0), 1)  # how many entries stay non-zero
    theta = np.maximum(css[rho - 1, np.arange(v2.shape[1])] / rho, 0.0)
    theta[inside] = 0.0
    w = np.maximum(a - theta, 0.0)
    if not positive:
        w *= np.sign(v2)
    return w[:, 0] if vec else w


@dataclass
class MuLassoResult:
    """Weights (m x C), objective ||X^T w_j - l_j||^2 per class, duality gap, iterations, convergence.

    `iterations` counts working-set rounds plus SPG iterations of the slowest class; `n_iter` the same
    per class; `relative_gap` is what the stopping rule compares with `tol`: gap / objective, or
    gap / (1 % of ||l_j||^2) where the fit is nearly exact (objective below that)."""

    W: np.ndarray
    objective: np.ndarray
    gap: np.ndarray
    iterations: int
    converged: bool
    n_iter: np.ndarray | None = None
    relative_gap: np.ndarray | None = None


class _Problem:
    """f(w) = ||X^T w - l||^2 per column, with X (X^T w - l) for the gradient and dual gap; through
    the Gram matrix X X^T when that is cheaper (few features), else matrix-free."""

    def __init__(self, X: np.ndarray, L: np.ndarray, gram: bool):
        self.X, self.L, self.gram = X, L, gram
        self.c = (L * L).sum(0)
        self.B = X @ L
        self._G: np.ndarray | None = None

    @property
    def G(self) -> np.ndarray | None:
        # Formed on first use only: the working-set stage forms it for small layers alone (on a
        # 5,000-neuron layer it costs more than the whole solve), the SPG fallback when `gram` says so.
        if self.gram and self._G is None:
            self._G = self.X @ self.X.T
        return self._G

    def evaluate_free(self, W: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As `evaluate`, always matrix-free: f from the residual itself, with no cancellation when the
        fit is nearly exact; only the rows where W is non-zero enter X^T W."""
        rows = np.flatnonzero(np.any(W != 0, axis=1))
        R = self.X[rows].T @ W[rows] - self.L[:, cols]
        return (R * R).sum(0), self.X @ R, (self.L[:, cols] * R).sum(0)

    def evaluate(self, W: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(f, X r, l.r) for the columns `cols` of the problem, r = X^T w - l."""
        B, c = self.B[:, cols], self.c[cols]
        if self.gram:
            GW = self.G @ W
            bw = (B * W).sum(0)
            return np.maximum((W * GW).sum(0) - 2 * bw + c, 0.0), GW - B, bw - c
        R = self.X.T @ W - self.L[:, cols]
        return (R * R).sum(0), self.X @ R, (self.L[:, cols] * R).sum(0)

    def gram_block(self, idx: np.ndarray) -> np.ndarray:
        if self._G is not None:
            return self._G[np.ix_(idx, idx)]
        return self.X[idx] @ self.X[idx].T


def _gap(f: np.ndarray, LR: np.ndarray, XR: np.ndarray, mu: np.ndarray, positive: bool) -> np.ndarray:
    """Duality gap f(w) - D(theta) at the dual point theta = 2 s r (r = X^T w - l), with the scale s
    that maximises the dual: D(2 s r) = -s^2 f - 2 s c, c = l.r + mu * h(X r) (h the support function
    of the constraint set), so s = -c / f when c < 0, else 0. s = 1 gives the textbook gap
    2 (f + c); the rescaled one is never larger and stays tight where the L1 constraint is slack and
    the fit nearly exact (fewer samples than neurons), where mu * ||X r||_inf dominates the
    textbook gap although f itself, a gap too since f* >= 0, is already small."""
    support = np.maximum((-XR).max(0), 0.0) if positive else np.abs(XR).max(0)
    c = LR + mu * support
    dual = np.where(c < 0, c * c / np.maximum(f, 1e-300), 0.0)
    return np.maximum(f - dual, 0.0)


def _solve(K: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    # LU is several times faster than the SVD behind lstsq; fall back to it for singular blocks
    # (dead or duplicated neurons). The caller keeps the result only if the objective drops.
    try:
        sol = np.linalg.solve(K, rhs)
        if np.all(np.isfinite(sol)):
            return sol
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(K, rhs, rcond=None)[0]


def _polish(prob: _Problem, w: np.ndarray, j: int, mu: float, rounds: int = 8) -> np.ndarray | None:
    """Exact minimiser on the support and signs of `w` with the L1 constraint active (the KKT system
    of an equality-constrained least squares), or None. This is SPGL1's subspace-minimisation idea:
    SPG finds the support fast, one solve finishes where ill-conditioning (correlated and dead
    neurons) makes gradient steps crawl. Entries whose sign flips are dropped and the system solved
    again, as in active-set methods."""
    S = np.flatnonzero(w)
    s = np.sign(w[S])
    for _ in range(rounds):
        k = len(S)
        if not k:
            return None
        K = np.zeros((k + 1, k + 1))
        K[:k, :k] = prob.gram_block(S)
        K[:k, k] = K[k, :k] = s
        sol = _solve(K, np.r_[prob.B[S, j], mu])
        if sol[k] < 0:  # negative multiplier: the L1 constraint is not active; plain least squares
            ls = _solve(K[:k, :k], prob.B[S, j])
            if np.abs(ls).sum() > mu:
                return None
            out = np.zeros_like(w)
            out[S] = ls
            return out
        flipped = np.sign(sol[:k]) != s
        if not flipped.any():
            out = np.zeros_like(w)
            out[S] = sol[:k]
            return out
        S, s = S[~flipped], s[~flipped]
    return None


def _lars_at_mu(K: np.ndarray, b: np.ndarray, n: int, mu: float, positive: bool, steps: int = 16) -> np.ndarray:
    """Exact solution of min ||A w - l||^2 s.t. ||w||_1 <= mu from K = A^T A and b = A^T l: the lasso
    path is piecewise linear and its L1 norm grows along it, so interpolate between the two knots
    around ||w||_1 = mu (the last knot, the least-squares end, when the constraint is inactive).
    The path is followed for `steps` knots, doubled until it passes mu or ends: tracing the whole
    path costs as many knots as neurons, the part up to mu about as many as the solution keeps."""
    while True:
        with warnings.catch_warnings():
            # degenerate blocks (dead or collinear neurons) make LARS warn and drop a regressor; the
            # duality gap checked by the caller decides whether the result is good enough
            warnings.simplefilter("ignore")
            _, _, coefs, n_iter = lars_path_gram(b, K, n_samples=n, method="lasso", positive=positive,
                                                 max_iter=steps, return_n_iter=True)
        norms = np.abs(coefs).sum(0)
        if norms[-1] >= mu or n_iter < steps or steps > 8 * len(b) + 50:
            break
        steps *= 2
    over = np.flatnonzero(norms >= mu)
    if not len(over):
        return coefs[:, -1]
    k = max(int(over[0]), 1)
    t = (mu - norms[k - 1]) / max(norms[k] - norms[k - 1], 1e-300)
    return coefs[:, k - 1] + t * (coefs[:, k] - coefs[:, k - 1])


def _grow(score: np.ndarray, S: np.ndarray, size: int) -> np.ndarray:
    """Add to the working set S the `size` neurons outside it whose gradient score exceeds the largest
    score inside it (the Lagrange multiplier of the solved subproblem): the neurons that break the
    optimality conditions of the full problem, worst first. S itself when there are none."""
    lam = max(float(score[S].max()) if len(S) else 0.0, 0.0)
    cand = np.flatnonzero(score > lam * (1 + 1e-9))
    cand = cand[~np.isin(cand, S)]
    if not len(cand):
        return S
    return np.union1d(S, cand[np.argsort(-score[cand], kind="stable")[:size]])


def _working_sets(prob: _Problem, W: np.ndarray, mus: np.ndarray, positive: bool, done_fn, max_rounds: int,
                  start: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1: per class, solve exactly on a growing set of neurons until the full gap is small.
    Returns W and the rounds each class took. The set at least doubles each round, so a class needs
    about log2(m / start) rounds at worst, each one matrix-free product with X."""
    m, C = W.shape
    n = prob.X.shape[1]
    cols = np.arange(C)
    if C * start * start >= m * m or m <= 16 * start:
        # small layers (16 x 64 = 1,024 neurons by default), or the sets' Gram blocks would cost as much as
        # the whole Gram matrix: form it once and start from all neurons, in one LARS path per class
        # (growing sets would pay a Python step per knot in every round)
        if prob._G is None:
            prob._G = prob.X @ prob.X.T
        start = m
    sets = [np.flatnonzero(W[:, j]) for j in cols]
    rounds = np.zeros(C, dtype=int)
    f, XR, LR = prob.evaluate_free(W, cols)
    for _ in range(max_rounds):
        todo = ~done_fn(f, XR, LR)
        for j in cols[todo]:
            score = -XR[:, j] if positive else np.abs(XR[:, j])
            grown = _grow(score, sets[j], max(len(sets[j]), start))
            if len(grown) == len(sets[j]) and rounds[j]:
                todo[j] = False  # no violator left: only the fallback can improve this class
                continue
            sets[j] = grown
            # knots needed ~ neurons kept: the last solution's size predicts it; a first solve guesses half
            nnz = int(np.count_nonzero(W[:, j]))
            steps = 2 * nnz + 16 if nnz else min(len(grown) // 2 + 1, 64)
            W[:, j] = 0.0
            W[grown, j] = _lars_at_mu(prob.gram_block(grown), prob.B[grown, j], n, mus[j], positive, steps)
            rounds[j] += 1
        if not todo.any():
            break
        f[todo], XR[:, todo], LR[todo] = prob.evaluate_free(W[:, todo], cols[todo])
    return W, rounds


def mu_lasso(X: np.ndarray, L: np.ndarray, mu: float, *, positive: bool = False, tol: float = 1e-6,
             max_iter: int = 5000, memory: int = 10, polish_every: int = 25, gram: bool | None = None,
             W0: np.ndarray | None = None, working_set: bool = True, ws_start: int = 64,
             max_rounds: int = 20) -> MuLassoResult:
    """Solve min_W ||X^T W - L||_F^2 s.t. ||w_j||_1 <= mu (columns j independent).

    X: m features x N samples. L: N x C targets (one-hot class indicators for relevant-neuron
    selection). Stops when every class's duality gap is below `tol` times its objective (so the
    objective is within `tol` relative of the optimum; for near-exact fits, `tol` times 1 % of
    ||l_j||^2). `working_set` runs stage 1 (exact LARS solves on sets of neurons that start at
    `ws_start`, or at all neurons when there are at most 16 x `ws_start`, and grow for at most
    `max_rounds` rounds); classes still above the tolerance, or all
    classes when `working_set=False`, go to SPG for at most `max_iter` iterations, warm-started
    from stage 1 or from `W0`. `gram=None` lets SPG use the Gram matrix X X^T when m <= N and it
    fits in about 300 MB.
    """
    X = np.asarray(X, dtype=np.float64)
    L = np.asarray(L, dtype=np.float64)
    if L.ndim == 1:
        L = L[:, None]
    if X.ndim != 2 or L.ndim != 2 or X.shape[1] != L.shape[0]:
        raise InputError(f"X must be features x samples and L samples x classes; got X {X.shape}, L {L.shape}.")
    if not np.all(np.isfinite(X)) or not np.all(np.isfinite(L)):
        raise InputError("X and L must be finite (no NaN or inf).")
    if not mu > 0:
        raise InputError(f"mu must be positive, got {mu}.")
    m, C = X.shape[0], L.shape[1]
    prob = _Problem(X, L, (m <= X.shape[1] and m * m <= 4e7) if gram is None else gram)
    mus = np.full(C, float(mu))
    # Relative accuracy, except where the fit is nearly exact (fewer samples than neurons): there an
    # absolute error of 1 % of the all-zero objective ||l_j||^2, times tol, is close enough.
    scale = np.maximum(prob.c * 1e-2, 1e-12)

    def rel_gap(f, XR, LR):
        return _gap(f, LR, XR, mus, positive) / np.maximum(f, scale)

    def done_fn(f, XR, LR):
        return rel_gap(f, XR, LR) <= tol

    W = project_l1_ball(np.zeros((m, C)) if W0 is None else W0, mus, positive)
    rounds = np.zeros(C, dtype=int)
    if working_set:
        W, rounds = _working_sets(prob, W, mus, positive, done_fn, max_rounds, ws_start)
        f, XR, LR = prob.evaluate_free(W, np.arange(C))
        if done_fn(f, XR, LR).all():
            return MuLassoResult(W, f, _gap(f, LR, XR, mus, positive), int(rounds.max()), True, rounds,
                                 rel_gap(f, XR, LR))
    W, f, XR, LR, steps = _spg(prob, W, mus, positive, done_fn, max_iter, memory, polish_every)
    n_iter = rounds + steps
    rel = rel_gap(f, XR, LR)
    return MuLassoResult(W, f, _gap(f, LR, XR, mus, positive), int(n_iter.max()), bool((rel <= tol).all()),
                         n_iter, rel)


def _spg(prob: _Problem, W: np.ndarray, mus: np.ndarray, positive: bool, done_fn, max_iter: int, memory: int,
         polish_every: int) -> tuple[np.ndarray, ...]:
    """Stage 2: spectral projected gradient from W. Returns W, f, X r, l.r and iterations per class."""
    m, C = W.shape
    cols = np.arange(C)
    f, XR, LR = prob.evaluate(W, cols)
    G = 2.0 * XR
    hist = np.tile(f, (memory, 1))
    # First step: scale so the projected-gradient step is of unit size in max-norm.
    pg = np.abs(project_l1_ball(W - G, mus, positive) - W).max(0)
    alpha = np.where(pg > 0, 1.0 / np.maximum(pg, 1e-300), 1.0)
    steps = np.zeros(C, dtype=int)
    for it in range(1, max_iter + 1):
        done = done_fn(f, XR, LR)
        if done.all():
            break
        # polish at once too: from a warm start the support is usually right already
        if polish_every and (it == 1 or it % polish_every == 0):
            for j in cols[~done]:
                w = _polish(prob, W[:, j], j, mus[j])
                if w is None:
                    continue
                fj, xrj, lrj = prob.evaluate(w[:, None], cols[j:j + 1])
                if fj[0] < f[j]:
                    W[:, j], f[j], XR[:, j], LR[j], G[:, j] = w, fj[0], xrj[:, 0], lrj[0], 2.0 * xrj[:, 0]
                    hist[:, j] = f[j]
            done = done_fn(f, XR, LR)
            if done.all():
                break
        steps[~done] = it
        D = project_l1_ball(W - alpha * G, mus, positive) - W
        gtd = (G * D).sum(0)
        lam = np.ones(C)
        fmax = hist.max(0)
        accepted = done | (gtd >= 0)  # finished classes, or no descent direction left
        W_new, f_new, XR_new, LR_new = W.copy(), f.copy(), XR.copy(), LR.copy()
        for _ in range(40):
            todo = ~accepted
            if not todo.any():
                break
            Wt = W[:, todo] + lam[todo] * D[:, todo]
            ft, xrt, lrt = prob.evaluate(Wt, cols[todo])
            ok = ft <= fmax[todo] + 1e-4 * lam[todo] * gtd[todo]
            idx = cols[todo][ok]
            W_new[:, idx], f_new[idx], XR_new[:, idx], LR_new[idx] = Wt[:, ok], ft[ok], xrt[:, ok], lrt[ok]
            accepted[idx] = True
            lam[cols[todo][~ok]] *= 0.5
        G_new = 2.0 * XR_new
        S, Y = W_new - W, G_new - G
        sts, sty = (S * S).sum(0), (S * Y).sum(0)
        alpha = np.clip(np.where(sty > 0, sts / np.where(sty > 0, sty, 1.0), 1e3), 1e-10, 1e10)
        W, f, XR, LR, G = W_new, f_new, XR_new, LR_new, G_new
        hist = np.vstack([hist[1:], f])
    # final figures matrix-free: the Gram form of f cancels badly on nearly exact fits
    f, XR, LR = prob.evaluate_free(W, cols)
    return W, f, XR, LR, steps


def relevant_mask(W: np.ndarray, rel_tol: float = 1e-6) -> np.ndarray:
    """Boolean (m x C): neurons whose weight for a class is non-zero (above `rel_tol` of that
    class's largest weight; the L1 projection makes the others exactly zero)."""
    scale = np.abs(W).max(0, keepdims=True)
    return np.abs(W) > rel_tol * np.where(scale > 0, scale, 1.0)
