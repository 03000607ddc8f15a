"""Defenses: adversarial training, autoencoders (middle, encoder, initial), prediction similarity."""
from advkeras.defenses.adversarial_training import PGDTrainer, adversarial_retraining, pgd_training  # noqa: E402,F401
from advkeras.defenses.autoencoders import (encoder_defense, initial_autoencoder,  # noqa: E402,F401
                                            middle_autoencoder)
from advkeras.defenses.build import DEFENSES, build_defense  # noqa: E402,F401
from advkeras.defenses.result import DefenseResult  # noqa: E402,F401
from advkeras.defenses.prediction_similarity import PredictionSimilarity, build_defended_model  # noqa: E402,F401
