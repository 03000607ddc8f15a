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

    def summary(self) -> dict:
        return {"threshold": self.threshold, "target_fpr": self.target_fpr, "user_fpr": self.user_fpr,
                "n_users": self.n_users, "n_queries": self.n_queries}


def calibrate_threshold(defended: tf.keras.Model, sessions: Mapping[str, np.ndarray], *, target_fpr: float = 0.01,
                        progress: bool = True) -> Calibration:
    """Replay benign `sessions` (user id -> images in query order) and set the layer's threshold.

    Each user's score is the smallest `match_distance` over their session (the distance at which their
    first alarm would fire). The threshold is the `target_fpr` lower quantile of those scores, so at most
    that share of the calibration users would alarm; a query alarms when its distance is strictly below it.
    The layer's history and counters are reset before and after, so calibration leaves no state behind.
    """
    if not 0 <= target_fpr < 1:
        raise InputError(f"target_fpr must be in [0, 1), got {target_fpr}.")
    if not sessions:
        raise InputError("no benign sessions to calibrate on; pass {user_id: images} for several users.")
    layer = similarity_layer(defended)
    layer.reset_state(keep_threshold=False)  # threshold -inf: record only, never alarm
    scores, n_queries = {}, 0
    order = _interleaved(sessions)
    for user, x in tqdm(order, desc="calibration", unit="query", disable=not progress, leave=False):
        out = query(defended, x, user)
        scores[user] = min(scores.get(user, np.inf), float(out["match_distance"].min()))
        n_queries += len(x)
    values = np.array(list(scores.values()))
    threshold = float(np.quantile(values, target_fpr, method="lower"))
    layer.reset_state(keep_threshold=False)
    layer.threshold.assign(threshold)
    return Calibration(threshold, target_fpr, float((values < threshold).mean()), len(values), n_queries, scores)


def _interleaved(sessions: Mapping[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """One query per user in turn (round robin), as concurrent users would send them."""
    longest = max(len(x) for x in sessions.values())
    return [(u, x[i:i + 1]) for i in range(longest) for u, x in sessions.items() if i < len(x)]
