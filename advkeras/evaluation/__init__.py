"""Evaluation: detection metrics, robustness tables, traffic simulation, the risk summary."""
from advkeras.evaluation.detection import binary_detection_metrics, detection_metrics, roc_points, threshold_at_fpr

__all__ = ["binary_detection_metrics", "detection_metrics", "roc_points", "threshold_at_fpr"]
