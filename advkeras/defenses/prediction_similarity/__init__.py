"""Prediction similarity: a stateful Keras layer that detects attack processes from users' query history."""
from advkeras.defenses.prediction_similarity.canonical import canonical_views, content_fingerprint
from advkeras.defenses.prediction_similarity.index import INDEX_SCOPES, IndexedPredictionSimilarity
from advkeras.defenses.prediction_similarity.calibration import Calibration, calibrate_threshold
from advkeras.defenses.prediction_similarity.layer import ACTIONS, NO_HISTORY, SCOPES, PredictionSimilarity
from advkeras.defenses.prediction_similarity.metrics import METRICS, mse, psnr, ssim, thumbnail
from advkeras.defenses.prediction_similarity.model import (SERVING_KEYS, STORES, as_user, build_defended_model,
                                                           query, serving_function, similarity_layer)

__all__ = ["INDEX_SCOPES", "IndexedPredictionSimilarity", "STORES", "canonical_views", "content_fingerprint",
           "ACTIONS", "Calibration", "METRICS", "NO_HISTORY", "PredictionSimilarity", "SCOPES", "SERVING_KEYS",
           "as_user", "build_defended_model", "calibrate_threshold", "mse", "psnr", "query", "serving_function",
           "similarity_layer", "ssim", "thumbnail"]
