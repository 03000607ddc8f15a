"""mu-Lasso: W* = argmin ||X^T W - L^T||^2 subject to ||w_j||_1 <= mu for every class j.

Solved by spectral projected gradient (Birgin, Martinez & Raydan; the inner solver of SPGL1):
Barzilai-Borwein steps, a non-monotone Armijo line search and Euclidean projection onto the L1
ball (Duchi et al. 2008). The classes are independent problems; they are solved together so each
iteration costs two BLAS-3 products (X^T W and X R), with a step length and line search per class.
Stopping uses the duality gap, which bounds the distance to the optimum: f(w) - f* <= gap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    """Weights (m x C), objective ||X^T w_j - l_j||^2 per class, duality gap, iterations, convergence."""

    W: np.ndarray
    objective: np.ndarray
    gap: np.ndarray
    iterations: int
    converged: bool


class _Problem:
    """f(w) = ||X^T w - l||^2 per column, with X (X^T w - l) for the gradient and dual gap; through
    the Gram matrix X X^T when that is cheaper (few features), else matrix-free."""

    def __init__(self, X: np.ndarray, L: np.ndarray, gram: bool):
        self.X, self.L, self.gram = X, L, gram
        self.c = (L * L).sum(0)
        self.B = X @ L
        self.G = X @ X.T if gram else None

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
        return self.G[np.ix_(idx, idx)] if self.gram else self.X[idx] @ self.X[idx].T


def _gap(f: np.ndarray, LR: np.ndarray, XR: np.ndarray, mu: np.ndarray, positive: bool) -> np.ndarray:
    # For the half-objective 0.5||r||^2 the dual point is -r and the gap is r.r + l.r + mu * h(-X r)
    # with h the support function of the constraint set; doubled because f carries no 1/2.
    support = np.maximum((-XR).max(0), 0.0) if positive else np.abs(XR).max(0)
    return np.maximum(2.0 * (f + LR + mu * support), 0.0)


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


def mu_lasso(X: np.ndarray, L: np.ndarray, mu: float, *, positive: bool = False, tol: float = 1e-6,
             max_iter: int = 5000, memory: int = 10, polish_every: int = 25, gram: bool | None = None,
             W0: np.ndarray | None = None) -> MuLassoResult:
    """Solve min_W ||X^T W - L||_F^2 s.t. ||w_j||_1 <= mu (columns j independent).

    X: m features x N samples. L: N x C targets (one-hot class indicators for relevant-neuron
    selection). Stops when every class's duality gap is below `tol` times its objective (so the
    objective is within `tol` relative of the optimum; for near-exact fits, `tol` times 1 % of
    ||l_j||^2) or after `max_iter` iterations. `gram=None`
    uses the Gram matrix X X^T when m <= N and it fits in about 300 MB.
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
    cols = np.arange(C)

    W = project_l1_ball(np.zeros((m, C)) if W0 is None else W0, mus, positive)
    f, XR, LR = prob.evaluate(W, cols)
    G = 2.0 * XR
    hist = np.tile(f, (memory, 1))
    # First step: scale so the projected-gradient step is of unit size in max-norm.
    pg = np.abs(project_l1_ball(W - G, mus, positive) - W).max(0)
    alpha = np.where(pg > 0, 1.0 / np.maximum(pg, 1e-300), 1.0)
    gap = _gap(f, LR, XR, mus, positive)
    # Relative accuracy, except where the fit is nearly exact (fewer samples than neurons): there an
    # absolute error of 1 % of the all-zero objective ||l_j||^2, times tol, is close enough.
    scale = np.maximum(prob.c * 1e-2, 1e-12)
    it = 0
    for it in range(1, max_iter + 1):
        done = gap <= tol * np.maximum(f, scale)
        if done.all():
            break
        if polish_every and it % polish_every == 0:
            for j in cols[~done]:
                w = _polish(prob, W[:, j], j, mus[j])
                if w is None:
                    continue
                fj, xrj, lrj = prob.evaluate(w[:, None], cols[j:j + 1])
                if fj[0] < f[j]:
                    W[:, j], f[j], XR[:, j], LR[j], G[:, j] = w, fj[0], xrj[:, 0], lrj[0], 2.0 * xrj[:, 0]
                    hist[:, j] = f[j]
            gap = _gap(f, LR, XR, mus, positive)
            done = gap <= tol * np.maximum(f, scale)
            if done.all():
                break
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
        gap = _gap(f, LR, XR, mus, positive)
    converged = bool((gap <= tol * np.maximum(f, scale)).all())
    return MuLassoResult(W, f, gap, it, converged)


def relevant_mask(W: np.ndarray, rel_tol: float = 1e-6) -> np.ndarray:
    """Boolean (m x C): neurons whose weight for a class is non-zero (above `rel_tol` of that
    class's largest weight; the L1 projection makes the others exactly zero)."""
    scale = np.abs(W).max(0, keepdims=True)
    return np.abs(W) > rel_tol * np.where(scale > 0, scale, 1.0)
