"""From a trained classifier to a calibrated, exportable serving module."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

from advkeras.data.dataset import Dataset
from advkeras.defenses.prediction_similarity import build_defended_model, calibrate_threshold
from advkeras.evaluation.traffic import benign_sessions
from advkeras.serving.export import export_saved_model


def calibrated_defended_model(classifier: tf.keras.Model, benign: Dataset, *, target_fpr: float = 0.01,
                              n_users: int = 40, queries_per_user: int = 20, seed: int = 0,
                              **layer_kwargs: Any) -> tuple[tf.keras.Model, dict]:
    """Wrap `classifier` with prediction similarity and calibrate its threshold on benign sessions
    (simulated users browsing neighbouring patches of one patient each) drawn from `benign`."""
    defended = build_defended_model(classifier, **layer_kwargs)
    queries = min(queries_per_user, max(2, len(benign) // 4))
    sessions = {u: benign.x[idx] for u, idx in benign_sessions(benign, n_users, queries, seed=seed).items()}
    calibration = calibrate_threshold(defended, sessions, target_fpr=target_fpr)
    return defended, calibration.summary()


def export_classifier(classifier: tf.keras.Model, benign: Dataset, base: str | Path, name: str, *,
                      encoder_model: tf.keras.Model | None = None, feature_response: bool = False,
                      target_fpr: float = 0.01, seed: int = 0, **layer_kwargs: Any) -> tuple[Path, dict]:
    """Calibrate prediction similarity on `benign`, then export a new SavedModel version. With
    `feature_response`, the native guided-backprop entropy is served as `feature_response_entropy`, and
    its thresholds at 1/5/10 % false positives (from `benign`) go into the export's metadata."""
    defended, calibration = calibrated_defended_model(classifier, benign, target_fpr=target_fpr, seed=seed,
                                                      **layer_kwargs)
    meta: dict[str, Any] = {"calibration": calibration, "similarity": similarity_config(defended)}
    detectors = {}
    if feature_response:
        from advkeras.detectors.feature_response import FeatureResponseDetector

        det = FeatureResponseDetector(classifier).fit(benign.x[:300])
        detectors["feature_response_entropy"] = det.entropy_function()
        meta["feature_response"] = {"window": det.window, "direction": det.direction,
                                    "thresholds": {str(k): float(v) for k, v in det.thresholds_.items()}}
    path = export_saved_model(defended, base, name, encoder_model=encoder_model, detectors=detectors, metadata=meta)
    return path, meta


def similarity_config(defended: tf.keras.Model) -> dict:
    from advkeras.defenses.prediction_similarity import similarity_layer

    layer = similarity_layer(defended)
    cfg = layer.get_config()
    return {"layer": type(layer).__name__,
            **{k: v for k, v in cfg.items() if k not in ("name", "trainable", "dtype", "threshold", "global_threshold")}}
