"""Autoencoder defenses: middle (between cnn and dnn), encoder (+ new head), initial (before cnn)."""
from advkeras.defenses.autoencoders.encoder import encoder_defense, encoder_of
from advkeras.defenses.autoencoders.initial import build_conv_autoencoder, initial_autoencoder
from advkeras.defenses.autoencoders.middle import build_dense_autoencoder, middle_autoencoder, train_feature_autoencoder

__all__ = ["build_conv_autoencoder", "build_dense_autoencoder", "encoder_defense", "encoder_of",
           "initial_autoencoder", "middle_autoencoder", "train_feature_autoencoder"]
