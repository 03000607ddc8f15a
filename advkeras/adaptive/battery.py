"""The worst-case battery: every attack an adaptive evaluation runs against one defended model.

Beyond plain white-box PGD, it runs PGD on the margin loss with random restarts, PGD through BPDA when the
model has purifying parts (autoencoders), with EOT when it answers randomly, the score-based Square attack
(no gradient at all, so masking cannot stop it), and adversarials made on other models (transfer). Each is
judged on the images the defended model itself classifies correctly; the highest success is its worst case.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf

from advkeras.adaptive.bpda import bpda_model, purifier_parts
from advkeras.adaptive.eot import eot_model, is_randomised
from advkeras.attacks import generate
from advkeras.attacks.base import predict_labels
from advkeras.evaluation.detection import proportion_interval
from advkeras.evaluation.risk import attack_label

KINDS = ("white-box", "bpda", "eot", "score-based", "transfer")


def counted(k: int, n: int, kind: str, **extra) -> dict:
    """One attack run as the stage records it: success k / n on correctly classified images, its interval."""
    return {"success": k / n if n else float("nan"), "k": int(k), "n": int(n),
            "ci": list(proportion_interval(int(k), int(n))), "kind": kind, **extra}


def defense_battery(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, eps: float, *, steps: int = 10,
                    restarts: int = 3, bpda: bool = True, eot_samples: int = 8, square_iterations: int = 100,
                    transferred: Mapping[str, np.ndarray] | None = None, seed: int = 0) -> dict[str, dict]:
    """{label: counted run} of each battery attack on the images of (x, y) that `model` classifies correctly.

    `transferred` maps a source name to adversarials of all of `x` (same order) made on another model.
    """
    ok = predict_labels(model, x) == y
    xs, ys = x[ok], y[ok]
    runs: dict[str, dict] = {}

    def record(label: str, kind: str, x_adv: np.ndarray, **extra) -> None:
        k = int((predict_labels(model, x_adv) != ys).sum()) if len(ys) else 0
        runs[label] = counted(k, len(ys), kind, **extra)

    if not len(ys):
        return runs
    pgd = {"steps": steps, "loss": "margin", "restarts": restarts}
    res = generate(model, xs, ys, "pgd", eps=eps, backend="native", seed=seed, progress=False, **pgd)
    record(f"{attack_label(res.summary())} white-box", "white-box", res.clipped)
    view, how, kind = model, [], "bpda"
    parts = purifier_parts(model) if bpda else []
    if parts:
        view, how = bpda_model(model, parts), [f"BPDA through {', '.join(parts)}"]
    if is_randomised(model, xs):
        view, kind = eot_model(view, eot_samples), "eot"
        how.append(f"EOT over {eot_samples} draws")
    if how:
        res = generate(view, xs, ys, "pgd", eps=eps, backend="native", seed=seed, progress=False, **pgd)
        record(f"{attack_label(res.summary())} {', '.join(how)}", kind, res.clipped)
    if square_iterations:
        res = generate(model, xs, ys, "square", eps=eps, backend="art", seed=seed, progress=False,
                       max_iter=int(square_iterations))
        record(f"Square (ART, {int(square_iterations)} iterations) score-based", "score-based", res.clipped,
               mean_queries=res.summary()["mean_queries"])
    for source, x_adv in (transferred or {}).items():
        record(f"transferred from {source}", "transfer", np.asarray(x_adv)[ok])
    return runs
