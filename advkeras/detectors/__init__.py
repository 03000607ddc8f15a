"""Detectors of adversarial inputs: relevant neurons, feature responses, encoder disagreement, peers."""
from advkeras.detectors.feature_response import (FeatureResponseDetector, local_spatial_entropy,  # noqa: E402,F401
                                                 mean_local_entropy)
from advkeras.detectors.encoder_disagreement import EncoderDisagreementDetector  # noqa: E402,F401
from advkeras.detectors.relevant_neurons import (NeuronDescriptors, RelevantNeuronDetector,  # noqa: E402,F401
                                                 RelevantNeuronSets, mu_lasso)
from advkeras.detectors.peers import FeatureSqueezing, MahalanobisDetector  # noqa: E402,F401
from advkeras.detectors.sklearn_compat import NotFittedDetectorError  # noqa: E402,F401
