"""Peer detectors run on the same adversarial sets: Feature Squeezing and Mahalanobis."""
from advkeras.detectors.peers.feature_squeezing import FeatureSqueezing, median_smooth, reduce_bit_depth
from advkeras.detectors.peers.mahalanobis import MahalanobisDetector

__all__ = ["FeatureSqueezing", "MahalanobisDetector", "median_smooth", "reduce_bit_depth"]
