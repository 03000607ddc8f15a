"""Checks that keep a verdict honest: degenerate models and signs of gradient masking.

Degenerate: a model whose balanced accuracy falls well below the original's, or that puts almost every
image in one class that is far from that common among the labels. Such a model "recovers" every
adversarial of its favourite class and looks robust to attacks that cannot move a constant answer.

Sanity checks (Carlini et al. 2019, "On Evaluating Adversarial Robustness", section 5): an unbounded
attack must succeed, iterative attacks must beat single-step ones, and white-box attacks must beat
transfer from another model. A model that fails one is not shown to be robust: its gradients may be
masked, so its attack numbers are a lower bound on the risk and it cannot earn a "low" evasion level.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf

from advkeras.attacks import AttackResult, generate
from advkeras.attacks.base import predict_labels

MAX_BALANCED_DROP = 0.10     # degenerate beyond this drop of balanced accuracy below the original's
DOMINANT_SHARE = 0.90        # ... or when one class takes at least this share of the predictions
DOMINANT_LABEL_SHARE = 0.70  # ... while it is less than this share of the labels
LARGE_EPS = 64 / 255         # the "unbounded" budget of the first sanity check
LARGE_EPS_SUCCESS = 0.99     # success it must reach on correctly classified images


def degeneracy(metrics: Mapping, reference: Mapping | None = None) -> list[str]:
    """Why a model is degenerate (empty when it is not). `metrics` and `reference` (the original's)
    are `models.metrics.classification_metrics` outputs on the same images."""
    reasons = []
    bal = metrics.get("balanced_accuracy")
    ref = None if reference is None else reference.get("balanced_accuracy")
    if bal is not None and ref is not None and round(ref - bal, 9) > MAX_BALANCED_DROP:  # 0.8 - 0.7 is 0.1000...01
        reasons.append(f"balanced accuracy {bal:.3f} is {ref - bal:.3f} below the original's {ref:.3f} "
                       f"(degenerate when > {MAX_BALANCED_DROP:.2f})")
    for name, share in (metrics.get("prediction_share") or {}).items():
        label = (metrics.get("label_share") or {}).get(name)
        if share is not None and label is not None and share >= DOMINANT_SHARE and label < DOMINANT_LABEL_SHARE:
            reasons.append(f"class {name!r} takes {share:.0%} of the predictions but is {label:.0%} of the labels "
                           f"(degenerate when >= {DOMINANT_SHARE:.0%} while < {DOMINANT_LABEL_SHARE:.0%})")
    return reasons


def success_counts(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, x_adv: np.ndarray) -> tuple[int, int]:
    """(k, n): of the n images `model` classifies correctly, the k that `x_adv` (same order) flips."""
    ok = predict_labels(model, x) == y
    if not ok.any():
        return 0, 0
    return int((predict_labels(model, x_adv[ok]) != y[ok]).sum()), int(ok.sum())


def success_on_correct(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, x_adv: np.ndarray) -> float:
    """Share of the images `model` classifies correctly that `x_adv` (made elsewhere) flips: transfer success."""
    k, n = success_counts(model, x, y, x_adv)
    return k / n if n else float("nan")


def _check(passed: bool, value: float, reference: float, rule: str) -> dict:
    return {"passed": bool(passed), "value": float(value), "reference": float(reference), "rule": rule}


def sanity_checks(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, *, whitebox: AttackResult,
                  steps: int = 20, seed: int = 0, single_step: AttackResult | None = None,
                  transfer_adv: np.ndarray | None = None) -> dict:
    """The three checks for one model at `whitebox.eps` (a white-box Linf iterative attack already run).

    Runs PGD at 64/255 (`steps` steps, margin loss: cross-entropy saturates on confident logits) and FGSM
    at the white-box eps when `single_step` is not given. `transfer_adv`: adversarials of the same images
    made on another model (the original); without it the transfer check is skipped."""
    eps = float(whitebox.eps)
    nan = float("nan")
    large = generate(model, x, y, "pgd", eps=LARGE_EPS, backend="native", steps=steps, loss="margin", seed=seed,
                     progress=False)
    single = single_step or generate(model, x, y, "fgsm", eps=eps, backend="native", seed=seed, progress=False)
    wb = whitebox.success_rate_on_correct
    checks = {"large_budget": _check(large.success_rate_on_correct >= LARGE_EPS_SUCCESS,
                                     large.success_rate_on_correct, LARGE_EPS_SUCCESS,
                                     f"PGD-{steps} (margin loss) at 64/255 flips >= {LARGE_EPS_SUCCESS:.0%} "
                                     "of correctly classified images"),
              "iterative_vs_single_step": _check(wb >= single.success_rate_on_correct, wb,
                                                 single.success_rate_on_correct,
                                                 f"{whitebox.attack.upper()} success >= FGSM success at the same eps")}
    if transfer_adv is not None:
        transfer = success_on_correct(model, x, y, transfer_adv)
        checks["whitebox_vs_transfer"] = _check(not transfer > wb, wb, transfer if transfer == transfer else nan,
                                                "white-box success >= success of adversarials transferred from "
                                                "the original model")
    if not checks["large_budget"]["passed"]:
        # Tell "the budget is not enough for this model" from "its gradients lead nowhere": with eps = 1 any
        # image can be made any other image, so an attack that follows informative gradients wins every time.
        unbounded = generate(model, x, y, "pgd", eps=1.0, backend="native", steps=steps, loss="margin", seed=seed,
                             random_start=False, progress=False)  # a random start over +-1 would be noise already
        checks["large_budget"]["unbounded_success"] = unbounded.success_rate_on_correct
    failed = [k for k, c in checks.items() if not c["passed"]]
    return {"eps": eps, "n": int(len(y)), "checks": checks, "passed": not failed, "failed": failed,
            "gradient_masking_suspected": bool(failed)}
