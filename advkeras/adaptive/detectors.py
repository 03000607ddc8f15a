"""Attacks on a classifier guarded by a detector: fool the classifier *and* stay under the detector's
calibrated threshold (Carlini & Wagner, AISec 2017).

The attacker minimises, per image, relu(kappa - margin) + lambda * relu((s - t) / scale + kappa_s): margin is
the best wrong logit minus the true one (positive once fooled), s the detector's score, t its threshold and
scale the spread of clean scores, so lambda means the same for every detector. Two strategies:

- detector-aware PGD: signed gradient steps on that objective, for each lambda of a grid, through the
  detector's own differentiable score, or a differentiable surrogate fitted to it (then the real detector
  still judges the result: a transfer attack on the detector);
- joint Square search: Square's random square updates (Andriushchenko et al. 2020) accepted when they lower
  the objective computed with the real detector's score; it needs no gradient at all.

Per image, the first candidate that the real classifier gets wrong and the real detector lets through wins;
failing that, the wrong-class candidate with the lowest score. Detection is then measured on what the
attacker chose, at the threshold the detector was calibrated with.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from advkeras.attacks import generate
from advkeras.attacks.base import predict_labels
from advkeras.attacks.native import per_example_loss
from advkeras.errors import InputError
from advkeras.evaluation.detection import detection_metrics, detector_row, proportion_interval, threshold_at_fpr
from advkeras.models import check_images, predict_logits

KAPPA = 0.1      # logit margin the attack aims past the decision boundary
KAPPA_S = 0.1    # clean-score spreads the attack aims under the threshold


@dataclass
class Differentiable:
    """A TF function images -> detector score (higher: more suspect) that a gradient attack can follow, with
    the threshold and spread it is read against. `exact`: it is the detector's own score, not a surrogate."""
    fn: Callable[[tf.Tensor], tf.Tensor]
    threshold: float
    scale: float
    exact: bool
    what: str


@dataclass
class DetectorTarget:
    """What an adaptive attacker knows of a detector: its score on images (numpy, higher: more suspect), the
    threshold it flags above and the spread of its clean scores; optionally a differentiable view of it."""
    name: str
    score: Callable[[np.ndarray], np.ndarray]
    threshold: float
    scale: float
    differentiable: Differentiable | None = None


def spread(clean_scores: np.ndarray) -> float:
    """Robust spread of clean scores (inter-quartile range / 1.349, the std of a normal), never zero."""
    s = np.asarray(clean_scores, np.float64)
    iqr = float(np.subtract(*np.percentile(s, [75, 25]))) / 1.349
    return max(iqr, float(s.std()), 1e-6) if iqr <= 0 else iqr


def calibrated_target(name: str, score: Callable[[np.ndarray], np.ndarray], calibration_scores: np.ndarray, *,
                      fpr: float = 0.05, differentiable: Differentiable | None = None) -> DetectorTarget:
    """A `DetectorTarget` whose threshold is the detector's at `fpr` on its clean calibration scores (the same
    rule `evaluation.detection.detection_metrics` applies)."""
    calibration_scores = np.asarray(calibration_scores, np.float64)
    return DetectorTarget(name, score, threshold_at_fpr(calibration_scores, fpr), spread(calibration_scores),
                          differentiable)


def differentiable_from(fn: Callable[[tf.Tensor], tf.Tensor], calibration_x: np.ndarray, *, exact: bool, what: str,
                        fpr: float = 0.05, batch_size: int = 128) -> Differentiable:
    """Wrap a TF score function with the threshold at `fpr` and the spread of its scores on clean images."""
    scores = np.concatenate([np.asarray(fn(tf.constant(calibration_x[i:i + batch_size])))
                             for i in range(0, len(calibration_x), batch_size)])
    return Differentiable(fn, threshold_at_fpr(scores, fpr), spread(scores), exact, what)


def target_for(detector, calibration_x: np.ndarray, *, name: str | None = None, fpr: float = 0.05,
               descriptors=None) -> DetectorTarget:
    """A `DetectorTarget` from a fitted detector that scores images: its `score_samples` (feature responses) or
    `decision_function` (higher: more suspect), thresholded at `fpr` on clean `calibration_x`, with its
    `differentiable_score` when it has one. A relevant-neuron detector scores descriptors, not images: pass the
    `NeuronDescriptors` that made them as `descriptors`. Scores must grow with suspicion (advkeras detectors do;
    scikit-learn's outlier detectors score normality: wrap their negation in a `DetectorTarget`). The threshold is
    recomputed from `calibration_x`: pass the images the detector's own threshold was set on to attack that one."""
    score = getattr(detector, "score_samples", None) or getattr(detector, "decision_function", None)
    if not callable(score):
        raise InputError(f"{type(detector).__name__} has no score: an adaptive attack needs a detector with "
                         "decision_function(images) or score_samples(images) (higher: more suspect); wrap any other "
                         "in advkeras.adaptive.DetectorTarget(name, score, threshold, scale).")
    if descriptors is not None:
        score = (lambda f: lambda x: f(descriptors.transform(x)))(score)
    elif hasattr(detector, "forest_inputs"):
        raise InputError(f"{type(detector).__name__} scores neuron descriptors, not images; pass the "
                         "NeuronDescriptors that made its training data as descriptors=.")
    diff = None
    if hasattr(detector, "differentiable_score"):
        diff = differentiable_from(detector.differentiable_score, calibration_x, exact=True, what="its own score",
                                   fpr=fpr)
    return calibrated_target(name or type(detector).__name__, score, score(calibration_x), fpr=fpr,
                             differentiable=diff)


def _objective(margin, score, threshold, scale, lam):
    return tf.nn.relu(KAPPA - margin) + lam * tf.nn.relu((score - threshold) / scale + KAPPA_S)


def detector_aware_pgd(model: tf.keras.Model, diff: Differentiable, x: np.ndarray, y: np.ndarray, eps: float, *,
                       lam: float, steps: int = 20, seed: int = 0, batch_size: int = 128) -> np.ndarray:
    """Signed-gradient descent of the joint objective through `diff`, from a random start in the eps ball (step
    2.5 eps / steps); per image the first iterate that reaches zero objective, else the last."""

    @tf.function(reduce_retracing=True)
    def step(x_adv, x0, labels, size):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            margin = per_example_loss(model(x_adv, training=False), labels, "margin")
            score = tf.cast(diff.fn(x_adv), tf.float32)
            total = tf.reduce_sum(_objective(margin, score, diff.threshold, diff.scale, lam))
        grad = tape.gradient(total, x_adv, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        moved = tf.clip_by_value(x_adv - size * tf.sign(grad), x0 - eps, x0 + eps)
        return tf.clip_by_value(moved, 0.0, 1.0), margin, score

    rng = np.random.default_rng(seed)
    out = []
    for i in range(0, len(x), batch_size):
        x0, labels = x[i:i + batch_size], y[i:i + batch_size]
        x_adv = np.clip(x0 + rng.uniform(-eps, eps, x0.shape), 0, 1).astype(np.float32)
        best, rank, low = x_adv.copy(), np.full(len(x0), 2), np.full(len(x0), np.inf)
        for _ in range(steps + 1):  # the last pass only scores the final iterate
            moved, margin_now, score = step(tf.constant(x_adv), tf.constant(x0), tf.constant(labels), 2.5 * eps / steps)
            margin_now, score = margin_now.numpy(), score.numpy()
            fooled = margin_now > 0
            # kept per image, as the attacker sees it through `diff`: the first iterate that clears both aims
            # (margin and score with room to spare, so a surrogate's or float32's error does not undo it),
            # else the fooling one of lowest score, else the last; the real detector judges afterwards
            clears = (margin_now >= KAPPA) & (score <= diff.threshold - KAPPA_S * diff.scale)
            r = np.where(clears, 0, np.where(fooled, 1, 2))
            take = (r < rank) | ((r == rank) & (r == 1) & (score < low)) | ((r == rank) & (r == 2))
            best[take], rank[take], low[take] = x_adv[take], r[take], score[take]
            x_adv = moved.numpy()
        out.append(best)
    return np.concatenate(out) if out else x.copy()


def _p_schedule(p_init: float, it: int, iterations: int) -> float:
    """Square's share of pixels changed per update, halved at the paper's steps (scaled to `iterations`)."""
    i = int(it / max(iterations, 1) * 10000)
    halvings = sum(i > t for t in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    return p_init / 2 ** halvings


def joint_square_search(model: tf.keras.Model, target: DetectorTarget, x: np.ndarray, y: np.ndarray, eps: float, *,
                        iterations: int = 100, lam: float = 1.0, p_init: float = 0.3, start: np.ndarray | None = None,
                        seed: int = 0) -> tuple[np.ndarray, int]:
    """Linf Square random search on the joint objective with the real detector score; returns the adversarials
    and the queries made per image (each query asks the classifier and the detector). `start` (points of the
    eps ball around x, e.g. adversarials that already fool the classifier) replaces Square's random stripes,
    so the search spends its queries on getting under the threshold."""
    rng = np.random.default_rng(seed)
    n, h, w, c = x.shape

    def loss(xa: np.ndarray, labels: np.ndarray) -> np.ndarray:
        margin = per_example_loss(predict_logits(model, xa), labels, "margin").numpy()
        return _objective(margin, np.asarray(target.score(xa), np.float32), target.threshold, target.scale,
                          lam).numpy()

    best = np.clip(x + eps * rng.choice([-1.0, 1.0], size=(n, 1, w, c)), 0, 1).astype(np.float32) if start is None \
        else np.clip(start, np.maximum(x - eps, 0), np.minimum(x + eps, 1)).astype(np.float32)
    best_loss, queries = loss(best, y), 1
    for it in range(iterations):
        idx = np.flatnonzero(best_loss > 0)
        if not len(idx):
            break
        side = int(np.clip(round(np.sqrt(_p_schedule(p_init, it, iterations) * h * w)), 1, min(h, w) - 1))
        cand = best[idx].copy()
        for j, k in enumerate(idx):
            r, q = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            cand[j, r:r + side, q:q + side] = np.clip(x[k, r:r + side, q:q + side]
                                                      + eps * rng.choice([-1.0, 1.0], size=(1, 1, c)), 0, 1)
        new = loss(cand, y[idx])
        queries += 1
        better = new < best_loss[idx]
        best[idx[better]], best_loss[idx[better]] = cand[better], new[better]
    return best, queries


@dataclass
class AdaptiveDetectorResult:
    """The adversarials the adaptive attacker chose, per image, and how the real classifier and detector saw them.
    Only images the classifier got right were attacked (`n`)."""
    label: str
    eps: float
    x: np.ndarray
    x_adv: np.ndarray
    fooled: np.ndarray
    scores: np.ndarray
    threshold: float
    strategies: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(len(self.x))

    @property
    def detected(self) -> np.ndarray:
        return self.scores > self.threshold

    @property
    def evaded(self) -> np.ndarray:
        """Fooled the classifier and stayed at or under the threshold."""
        return self.fooled & ~self.detected


def attack_detector(model: tf.keras.Model, target: DetectorTarget, x: np.ndarray, y: np.ndarray, eps: float, *,
                    lambdas: Sequence[float] = (0.01, 0.1, 1.0, 10.0), steps: int = 20, search_iterations: int = 100,
                    seed: int = 0) -> AdaptiveDetectorResult:
    """Every strategy the target allows, best candidate kept per image (see the module doc): PGD on the margin loss
    that ignores the detector (so the adaptive attacker never does worse than that attack on these images),
    detector-aware PGD per lambda when the target has a differentiable view, and the joint Square search (from
    the best candidate so far) when `search_iterations` > 0."""
    if not isinstance(target, DetectorTarget):
        raise InputError(f"target must be a DetectorTarget (a detector's score and threshold), got "
                         f"{type(target).__name__}; build one with advkeras.adaptive.calibrated_target.")
    if target.differentiable is None and not search_iterations:
        raise InputError(f"detector {target.name!r} has no differentiable score and search_iterations=0: no "
                         "adaptive attack can run. Give search_iterations > 0 or a differentiable view.")
    x = check_images(x, model)
    y = np.asarray(y)
    ok = predict_labels(model, x) == y
    xs, ys = x[ok], y[ok].astype(np.int64)
    candidates: list[tuple[str, np.ndarray]] = []
    if len(xs):  # what an attacker who ignores the detector sends: kept for the images it already gets through
        plain = generate(model, xs, ys, "pgd", eps=eps, backend="native", steps=steps, loss="margin", seed=seed,
                         progress=False)
        candidates.append((f"PGD ignoring the detector ({steps} steps, margin loss)", plain.clipped))
    if len(xs) and target.differentiable is not None:
        d = target.differentiable
        for lam in lambdas:
            candidates.append((f"detector-aware PGD ({steps} steps, lambda {lam:g}, through {d.what})",
                               detector_aware_pgd(model, d, xs, ys, eps, lam=float(lam), steps=steps, seed=seed)))
    if len(xs) and search_iterations:
        adv, queries = joint_square_search(model, target, xs, ys, eps, iterations=int(search_iterations),
                                           start=_best_so_far(target, model, xs, ys, candidates), seed=seed)
        candidates.append((f"joint Square search ({queries} queries, real score)", adv))
    return _choose(target, model, xs, ys, eps, candidates)


def _best_so_far(target: DetectorTarget, model, xs, ys, candidates) -> np.ndarray | None:
    """Per image, the candidate the search should start from (see `_choose`); None without candidates."""
    return _choose(target, model, xs, ys, 0.0, candidates).x_adv if candidates else None


def _choose(target: DetectorTarget, model, xs, ys, eps, candidates) -> AdaptiveDetectorResult:
    n = len(xs)
    x_adv, fooled = xs.copy(), np.zeros(n, bool)
    scores, rank = np.full(n, np.inf), np.full(n, 3)  # rank 0: evaded, 1: fooled but flagged, 3: nothing yet
    strategies = {}
    for label, adv in candidates:
        f = predict_labels(model, adv) != ys
        s = np.asarray(target.score(adv), np.float64)
        r = np.where(f & (s <= target.threshold), 0, np.where(f, 1, 2))
        take = (r < rank) | ((r == rank) & (r == 1) & (s < scores))
        x_adv[take], fooled[take], scores[take], rank[take] = adv[take], f[take], s[take], r[take]
        strategies[label] = {"fooled": int(f.sum()), "evaded": int((r == 0).sum()), "n": n}
    if n and np.isinf(scores).any():  # no candidate at all (nothing to attack with): the clean images' scores
        scores = np.asarray(target.score(x_adv), np.float64)
    label = "adaptive (" + "; ".join(strategies) + ")" if strategies else "adaptive (no image to attack)"
    return AdaptiveDetectorResult(label, eps, xs, x_adv, fooled, scores, target.threshold, strategies)


def adaptive_row(result: AdaptiveDetectorResult, detector: str, clean_scores: np.ndarray,
                 calibration_scores: np.ndarray, **extra) -> dict:
    """A `detector_summary` row for the adaptive attack: detection of the adversarials it chose (those that fool
    the classifier) at the calibrated thresholds, and its success at fooling unnoticed, with interval."""
    k = int(result.evaded.sum())
    evasion = {"adaptive": True, "evasion_success": k / result.n if result.n else float("nan"),
               "evasion_k": k, "n_attacked": result.n, "evasion_ci": list(proportion_interval(k, result.n)),
               "strategies": result.strategies, "eps": result.eps, **extra}
    attack = f"{result.label}@{result.eps}"
    adv = result.scores[result.fooled]
    if not len(adv):
        return {"detector": detector, "attack": attack, "auc": None, "tpr_at_1": None, "tpr_at_5": None,
                "tpr_at_10": None, "n_adv": 0, **evasion}
    m = detection_metrics(clean_scores, adv, calibration_scores=calibration_scores)
    if not np.isclose(m["at_fpr"]["0.05"]["threshold"], result.threshold, rtol=1e-6, atol=1e-9):
        raise InputError(f"the attack aimed at threshold {result.threshold:.6g} but these calibration scores set "
                         f"{m['at_fpr']['0.05']['threshold']:.6g} at 5 % FPR; pass the target's calibration scores.")
    row = detector_row(detector, attack, m, **evasion)
    # the attacker aimed under the 5 % threshold only: rates at other thresholds and the AUC are not adaptive
    return {**row, "auc": None, "tpr_at_1": None, "tpr_at_10": None}


def attach_adaptive(rows: list[dict], adaptive: dict) -> None:
    """Put the adaptive attack's detection at 5 % FPR beside each non-adaptive row of the same detector and eps
    (only the row of the attack it was fitted on, when the detector is fitted per attack: `fitted_on`)."""
    for row in rows:
        if row.get("adaptive") or row["detector"] != adaptive["detector"]:
            continue
        if adaptive.get("fitted_on") and row["attack"] != adaptive["fitted_on"]:
            continue  # a detector fitted per attack: another attack's rows describe another fitted detector
        same = row.get("eps") is not None and abs(row["eps"] - adaptive["eps"]) < 1e-6
        row.update(adaptive_tpr_at_5=adaptive["tpr_at_5"] if same else None,
                   adaptive_evasion_success=adaptive["evasion_success"] if same else None,
                   adaptive_eps=adaptive["eps"])
