"""Thresholds from benign traffic: the distance below which at most a target share of benign users alarm."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.defenses.prediction_similarity.model import query, similarity_layer
from advkeras.errors import InputError


@dataclass
class Calibration:
    """The calibrated threshold and what it was computed from."""

    threshold: float
    target_fpr: float
    user_fpr: float  # share of calibration users that would have alarmed at this threshold
    n_users: int
    n_queries: int
    user_scores: dict[str, float] = field(repr=False, default_factory=dict)  # per user: closest match
    global_threshold: float | None = None  # cross-user scope of the index store, when it has one

    def summary(self) -> dict:
        return {"threshold": self.threshold, "global_threshold": self.global_threshold, "target_fpr": self.target_fpr,
                "user_fpr": self.user_fpr, "n_users": self.n_users, "n_queries": self.n_queries}


def calibrate_threshold(defended: tf.keras.Model, sessions: Mapping[str, np.ndarray], *, target_fpr: float = 0.01,
                        progress: bool = True) -> Calibration:
    """Replay benign `sessions` (user id -> images in query order) and set the layer's threshold.

    Each user's score is the smallest `match_distance` over their session (the distance at which their
    first alarm would fire). The threshold is the `target_fpr` lower quantile of those scores, so at most
    that share of the calibration users would alarm; a query alarms when its distance is strictly below it.
    A layer with a cross-user scope (the index store, scope "global" or "both") gets `global_threshold` the
    same way from `global_match_distance`; with both scopes each gets half of `target_fpr`. Thresholds never
    exceed the layer's `max_distance` where it has one (when almost no benign user has a near-duplicate, the
    quantile says nothing about how far a near-duplicate may be).
    The layer's history and counters are reset before and after, so calibration leaves no state behind.
    """
    if not 0 <= target_fpr < 1:
        raise InputError(f"target_fpr must be in [0, 1), got {target_fpr}.")
    if not sessions:
        raise InputError("no benign sessions to calibrate on; pass {user_id: images} for several users.")
    layer = similarity_layer(defended)
    layer.reset_state(keep_threshold=False)  # threshold -inf: record only, never alarm
    scopes = {"threshold": "match_distance"}
    if getattr(layer, "has_global", False):
        scopes = {"global_threshold": "global_match_distance", **({} if not layer.has_user else scopes)}
    scores: dict[str, dict[str, float]] = {k: {} for k in scopes}
    n_queries = 0
    for user, x in tqdm(_interleaved(sessions), desc="calibration", unit="query", disable=not progress, leave=False):
        out = query(defended, x, user)
        for name, key in scopes.items():
            scores[name][user] = min(scores[name].get(user, np.inf), float(out[key].min()))
        n_queries += len(x)
    ceiling = getattr(layer, "max_distance", np.inf)
    thresholds, alarmed = {}, np.zeros(len(sessions), bool)
    for name, per_user in scores.items():
        values = np.array([per_user[u] for u in sessions])
        thresholds[name] = min(float(np.quantile(values, target_fpr / len(scopes), method="lower")), ceiling)
        alarmed |= values < thresholds[name]
    layer.reset_state(keep_threshold=False)
    for name, value in thresholds.items():
        getattr(layer, name).assign(value)
    main = "threshold" if "threshold" in scores else "global_threshold"
    return Calibration(thresholds.get("threshold", -np.inf), target_fpr, float(alarmed.mean()), len(sessions),
                       n_queries, scores[main], thresholds.get("global_threshold"))


def _interleaved(sessions: Mapping[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """One query per user in turn (round robin), as concurrent users would send them."""
    longest = max(len(x) for x in sessions.values())
    return [(u, x[i:i + 1]) for i in range(longest) for u, x in sessions.items() if i < len(x)]
