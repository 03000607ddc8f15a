"""Benchmark the mu-Lasso solver (SPG + L1-ball projection) against scikit-learn's Lasso.

Problem: m = 5,000 neurons, N = 10,000 samples, C = 10 classes, mu = 10 (the paper's default).
The data imitate neuron descriptors: non-negative, correlated (a 50-factor model plus noise), each
row scaled to unit norm; labels come from a sparse planted model. For the peer, each class is solved
by `sklearn.linear_model.Lasso` at the penalty that the KKT conditions tie to our solution
(alpha_j = ||X r_j||_inf / N), so both solve the same problem and reach the same L1 norm; Lasso gets
the precomputed Gram matrix (its fastest path here). The limit is the compiled (tf.function)
floor of our method: the Gram product plus one Gram-times-W product per iteration we ran.

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


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--m", type=int, default=5000)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--c", type=int, default=10)
    ap.add_argument("--mu", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/benchmarks/mu_lasso.json")
    args = ap.parse_args()
    load = os.getloadavg()
    X, L = make_problem(args.m, args.n, args.c, args.seed)

    ours, t_ours = timed(mu_lasso, X, L, args.mu, tol=1e-4)
    obj_ours = ours.objective

    # Peer: one Lasso per class at the KKT-matched penalty, given the Gram matrix once.
    R = X.T @ ours.W - L
    alphas = np.abs(X @ R).max(0) / args.n
    gram, t_gram = timed(lambda: X @ X.T)
    obj_peer, l1_peer, nnz_peer, t_fits = [], [], [], 0.0
    for j in range(args.c):
        lasso = Lasso(alpha=alphas[j], fit_intercept=False, precompute=gram, tol=1e-6, max_iter=5000,
                      selection="cyclic")
        _, t = timed(lasso.fit, X.T, L[:, j])
        t_fits += t
        w = lasso.coef_
        obj_peer.append(float(np.sum((X.T @ w - L[:, j]) ** 2)))
        l1_peer.append(float(np.abs(w).sum()))
        nnz_peer.append(int((w != 0).sum()))
    t_peer = t_gram + t_fits

    # Compiled floor of our method: Gram product + one G @ W product per iteration.
    Xt, Wt = tf.constant(X), tf.constant(ours.W)
    gram_fn = tf.function(lambda a: tf.matmul(a, a, transpose_b=True))
    gram_fn(Xt)
    _, t_gram_tf = timed(lambda: gram_fn(Xt).numpy())
    Gt = tf.constant(gram)
    step = tf.function(lambda g, w: tf.matmul(g, w))
    step(Gt, Wt)
    reps = 20
    _, t_steps = timed(lambda: [step(Gt, Wt) for _ in range(reps)][-1].numpy())
    t_limit = t_gram_tf + ours.iterations * t_steps / reps

    rel = (np.asarray(obj_ours) - np.asarray(obj_peer)) / np.asarray(obj_peer)
    write_json(args.out, {
        "benchmark": "mu-Lasso (SPG + L1-ball projection) vs scikit-learn Lasso at the matched penalty",
        "command": f"python scripts/bench_mu_lasso.py --seed {args.seed}",
        "problem": {"m": args.m, "N": args.n, "C": args.c, "mu": args.mu,
                    "data": "non-negative correlated descriptors (50 factors + noise), unit-norm samples, "
                            "labels from a sparse planted model"},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "numpy": np.__version__,
                    "sklearn": sklearn.__version__, "tensorflow": tf.__version__,
                    "load_average_at_start": load,
                    "note": "CPU only, 2 cores shared with other jobs: ratios are steadier than seconds"},
        "ours": {"seconds": t_ours, "iterations": ours.iterations, "converged": ours.converged,
                 "objective": obj_ours.tolist(), "l1": np.abs(ours.W).sum(0).tolist(),
                 "nonzeros": relevant_mask(ours.W).sum(0).tolist(),
                 "max_relative_duality_gap": float((ours.gap / ours.objective).max())},
        "peer_sklearn_lasso": {"seconds": t_peer, "gram_seconds": t_gram, "fit_seconds": t_fits,
                               "alphas": alphas.tolist(), "objective": obj_peer, "l1": l1_peer,
                               "nonzeros": nnz_peer},
        "limit_compiled": {"seconds": t_limit, "gram_seconds": t_gram_tf,
                           "matmul_seconds_per_iteration": t_steps / reps,
                           "what": "tf.function Gram product + iterations x (G @ W)"},
        "ratios": {"ours_over_peer_time": t_ours / t_peer, "ours_over_limit_time": t_ours / t_limit,
                   "objective_relative_difference_ours_minus_peer": rel.tolist(),
                   "max_abs_objective_relative_difference": float(np.abs(rel).max())},
    })
    print(f"ours {t_ours:.1f} s ({ours.iterations} it), sklearn {t_peer:.1f} s, limit {t_limit:.1f} s; "
          f"max |objective diff| {np.abs(rel).max():.2e}")


if __name__ == "__main__":
    main()
