"""Detectors of adversarial inputs: relevant neurons, feature responses, encoder disagreement, peers."""
from advkeras.detectors.feature_response import (FeatureResponseDetector, local_spatial_entropy,  # noqa: E402,F401
                                                 mean_local_entropy)
from advkeras.detectors.encoder_disagreement import EncoderDisagreementDetector  # noqa: E402,F401
