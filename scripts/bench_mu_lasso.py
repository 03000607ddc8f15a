"""Benchmark the mu-Lasso solver (working-set LARS, SPG fallback) against scikit-learn's Lasso.

Problem: m = 5,000 neurons, N = 10,000 samples, C = 10 classes, mu = 10 (the paper's default).
The data imitate neuron descriptors: non-negative, correlated (a 50-factor model plus noise), each
row scaled to unit norm; labels come from a sparse planted model. For the peer, each class is solved
by `sklearn.linear_model.Lasso` at the penalty that the KKT conditions tie to our solution
(alpha_j = ||X r_j||_inf / N), so both solve the same problem and reach the same L1 norm (equal
sparsity); Lasso runs twice, given the precomputed Gram matrix (Gram time included) and on X itself,
and the faster of the two is the peer. Our previous solver (SPG alone, `working_set=False`, which
forms the Gram matrix) is timed too. Each timing is the median of `--repeats` runs (default 3).
The limit is the compiled (tf.function) floor of our method: the products with X it cannot avoid,
X L once and X R once per working-set round.

    python scripts/bench_mu_lasso.py --seed 0
writes docs/benchmarks/mu_lasso.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.linear_model import Lasso  # noqa: E402

from advkeras.detectors.relevant_neurons import mu_lasso, relevant_mask  # noqa: E402
from advkeras.runs import write_json  # noqa: E402


def make_problem(m: int, n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(50, n))
    X = np.abs(rng.normal(size=(m, 50)) @ factors / np.sqrt(50) + 0.5 * rng.normal(size=(m, n)))
    X /= np.linalg.norm(X, axis=0, keepdims=True)  # each sample's descriptor has unit norm
    W = np.zeros((m, c))
    for j in range(c):
        W[rng.choice(m, 20, replace=False), j] = rng.normal(size=20)
    scores = X.T @ W + 0.01 * rng.normal(size=(n, c))
    scores -= scores.mean(0)  # every class gets samples
    return X, np.eye(c)[scores.argmax(1)]


def timed(fn, *args, repeats: int = 1, **kwargs):
    """Result of the last run and the median wall time over `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return out, float(np.median(times))


def peer_fits(X: np.ndarray, L: np.ndarray, alphas: np.ndarray, gram: np.ndarray | bool) -> dict:
    """One sklearn Lasso per class at the matched penalty; objective, L1 norm and support per class."""
    out = {"objective": [], "l1": [], "nonzeros": [], "n_iter": []}
    for j in range(L.shape[1]):
        lasso = Lasso(alpha=alphas[j], fit_intercept=False, precompute=gram, tol=1e-6, max_iter=5000,
                      selection="cyclic").fit(X.T, L[:, j])
        w = lasso.coef_
        out["objective"].append(float(np.sum((X.T @ w - L[:, j]) ** 2)))
        out["l1"].append(float(np.abs(w).sum()))
        out["nonzeros"].append(int((w != 0).sum()))
        out["n_iter"].append(int(lasso.n_iter_))
    return out


def compiled_limit(X: np.ndarray, L: np.ndarray, rounds: int, repeats: int) -> tuple[float, float]:
    """tf.function time of the products with X our method cannot avoid: X L, then X R per round."""
    Xt, Lt = tf.constant(X), tf.constant(L)
    prod = tf.function(lambda a, b: tf.matmul(a, b))
    prod(Xt, Lt)
    _, t = timed(lambda: prod(Xt, Lt).numpy(), repeats=max(repeats, 5))
    return (1 + rounds) * t, t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--m", type=int, default=5000)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--c", type=int, default=10)
    ap.add_argument("--mu", type=float, default=10.0)
    ap.add_argument("--tol", type=float, default=1e-6, help="our relative duality-gap tolerance")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per method (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/benchmarks/mu_lasso.json")
    args = ap.parse_args()
    load = os.getloadavg()
    X, L = make_problem(args.m, args.n, args.c, args.seed)

    ours, t_ours = timed(mu_lasso, X, L, args.mu, tol=args.tol, repeats=args.repeats)
    spg, t_spg = timed(mu_lasso, X, L, args.mu, tol=args.tol, working_set=False, repeats=args.repeats)

    # Peer: one Lasso per class at the KKT-matched penalty.
    R = X.T @ ours.W - L
    alphas = np.abs(X @ R).max(0) / args.n
    gram, t_gram = timed(lambda: X @ X.T, repeats=args.repeats)
    peer_gram, t_fits_gram = timed(peer_fits, X, L, alphas, gram, repeats=args.repeats)
    peer_x, t_fits_x = timed(peer_fits, X, L, alphas, False, repeats=args.repeats)
    t_peer_gram = t_gram + t_fits_gram
    best = "gram" if t_peer_gram <= t_fits_x else "x"
    peer, t_peer = (peer_gram, t_peer_gram) if best == "gram" else (peer_x, t_fits_x)
    t_limit, t_prod = compiled_limit(X, L, ours.iterations, args.repeats)

    obj_peer = np.asarray(peer["objective"])
    rel = (ours.objective - obj_peer) / obj_peer
    rel_spg = (spg.objective - obj_peer) / obj_peer
    cmd = f"python scripts/bench_mu_lasso.py --seed {args.seed}" + (
        f" --repeats {args.repeats}" if args.repeats != 3 else "")
    solver = lambda r, t: {"seconds": t, "iterations": r.iterations, "n_iter_per_class": r.n_iter,  # noqa: E731
                           "converged": r.converged, "objective": r.objective,
                           "l1": np.abs(r.W).sum(0), "nonzeros": relevant_mask(r.W).sum(0),
                           "relative_duality_gap": r.relative_gap,
                           "max_relative_duality_gap": float(r.relative_gap.max())}
    write_json(args.out, {
        "benchmark": "mu-Lasso (working-set LARS + SPG fallback) vs scikit-learn Lasso at the matched penalty",
        "command": cmd, "seed": args.seed, "repeats": args.repeats, "tolerance": args.tol,
        "problem": {"m": args.m, "N": args.n, "C": args.c, "mu": args.mu,
                    "data": "non-negative correlated descriptors (50 factors + noise), unit-norm samples, "
                            "labels from a sparse planted model"},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "numpy": np.__version__,
                    "sklearn": sklearn.__version__, "tensorflow": tf.__version__,
                    "load_average_at_start": load, "load_average_at_end": os.getloadavg(),
                    "note": "CPU only, 2 cores shared with other jobs: ratios are steadier than seconds"},
        "ours": solver(ours, t_ours),
        "ours_spg_only_previous_solver": solver(spg, t_spg),
        "peer_sklearn_lasso": {"seconds": t_peer, "variant": "precomputed Gram" if best == "gram" else "on X",
                               "alphas": alphas, **peer},
        "peer_variants": {"gram": {"seconds": t_peer_gram, "gram_seconds": t_gram, "fit_seconds": t_fits_gram,
                                   **peer_gram},
                          "x": {"seconds": t_fits_x, **peer_x}},
        "limit_compiled": {"seconds": t_limit, "product_seconds": t_prod,
                           "what": "tf.function X @ (N x C) products: once for X L, once per working-set round"},
        "ratios": {"ours_over_peer_time": t_ours / t_peer, "ours_over_limit_time": t_ours / t_limit,
                   "spg_only_over_peer_time": t_spg / t_peer,
                   "objective_relative_difference_ours_minus_peer": rel,
                   "max_abs_objective_relative_difference": float(np.abs(rel).max()),
                   "max_objective_relative_excess_ours_over_peer": float(rel.max()),
                   "objective_relative_difference_spg_only_minus_peer": rel_spg},
    })
    print(f"ours {t_ours:.2f} s ({ours.iterations} rounds, max rel gap {ours.relative_gap.max():.1e}), "
          f"SPG only {t_spg:.1f} s, sklearn {t_peer:.1f} s ({best}; Gram {t_peer_gram:.1f} s, X {t_fits_x:.1f} s), "
          f"limit {t_limit:.2f} s; objective (ours - sklearn) / sklearn in [{rel.min():.1e}, {rel.max():.1e}]; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
