"""Middle autoencoder: a dense autoencoder trained on the `cnn` features, inserted between `cnn` and `dnn`.

The original weights are frozen and not retrained: the autoencoder projects (possibly adversarial)
features back towards the manifold of clean training features before the unchanged head reads them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from advkeras.data.dataset import Dataset
from advkeras.defenses.autoencoders.fitting import best_epoch_losses, fit_arrays
from advkeras.defenses.cloning import clone_part, cnn_features, plain_parts
from advkeras.defenses.result import DefenseResult
from advkeras.errors import InputError
from advkeras.models import check_logits, compose
from advkeras.seeding import preserved_global_rng, seed_weights

L = tf.keras.layers


@preserved_global_rng()
def build_dense_autoencoder(n_features: int, *, code_size: int = 64, hidden: Sequence[int] = (256,),
                            scale: float = 1.0, nonnegative: bool = True,
                            name: str = "middle_ae") -> tf.keras.Model:
    """features -> "encoder" (-> code) -> "decoder" -> features, as a model of two named sub-models.

    `scale` (the spread of the training features) is built in as fixed Rescaling layers, so the
    autoencoder learns in unit scale yet reads and writes the cnn's own feature scale.
    """
    if code_size < 1 or any(h < 1 for h in hidden):
        raise InputError(f"code_size and hidden sizes must be positive, got {code_size} and {list(hidden)}.")
    enc_in = L.Input((n_features,), name="features")
    x = L.Rescaling(1.0 / scale, name="to_unit_scale")(enc_in)
    for i, units in enumerate(hidden, start=1):
        x = L.Dense(units, activation="relu", name=f"enc_dense_{i}")(x)
    encoder = tf.keras.Model(enc_in, L.Dense(code_size, name="code")(x), name="encoder")
    dec_in = L.Input((code_size,), name="code")
    x = dec_in
    for i, units in enumerate(reversed(hidden), start=1):
        x = L.Dense(units, activation="relu", name=f"dec_dense_{i}")(x)
    # cnn features end in ReLU/max-pooling, so they are non-negative; keep reconstructions so too.
    x = L.Dense(n_features, activation="relu" if nonnegative else None, name="reconstruction")(x)
    decoder = tf.keras.Model(dec_in, L.Rescaling(scale, name="to_feature_scale")(x), name="decoder")
    inp = L.Input((n_features,), name="features")
    return tf.keras.Model(inp, decoder(encoder(inp)), name=name)


@preserved_global_rng()
def train_feature_autoencoder(features: np.ndarray, val_features: np.ndarray | None = None, *, code_size: int = 64,
                              hidden: Sequence[int] = (256,), epochs: int = 40, batch_size: int = 64,
                              learning_rate: float = 1e-3, patience: int = 5,
                              seed: int = 0) -> tuple[tf.keras.Model, dict]:
    """Fit a dense autoencoder on feature vectors (MSE); returns it and its training history."""
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or len(features) < 2:
        raise InputError(f"features must be an N x D array with N >= 2, got shape {features.shape}.")
    scale = float(features.std()) or 1.0
    ae = seed_weights(build_dense_autoencoder(features.shape[1], code_size=code_size, hidden=hidden, scale=scale,
                                              nonnegative=bool(features.min() >= 0)), seed)
    val = None if val_features is None else (val_features, val_features)
    # The loss is taken in unit scale so one learning rate fits any backbone's feature magnitudes.
    history = fit_arrays(ae, features, features, val, loss=_ScaledMSE(scale), epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, patience=patience, seed=seed, desc="middle autoencoder")
    return ae, history


class _ScaledMSE(tf.keras.losses.Loss):
    def __init__(self, scale: float):
        super().__init__(name="scaled_mse")
        self.scale = scale

    def call(self, y_true, y_pred):
        return tf.reduce_mean(tf.square((y_true - y_pred) / self.scale), axis=-1)


@preserved_global_rng()
def middle_autoencoder(model: tf.keras.Model, train: Dataset, val: Dataset | None = None, *, code_size: int = 64,
                       hidden: Sequence[int] = (256,), epochs: int = 40, batch_size: int = 64,
                       learning_rate: float = 1e-3, patience: int = 5, seed: int = 0) -> DefenseResult:
    """image -> cnn -> middle_ae -> dnn, with copies of the original (frozen) cnn and dnn."""
    check_logits(model)
    cnn, dnn = plain_parts(model)
    feats = cnn_features(model, train.x)
    val_feats = None if val is None or not len(val) else cnn_features(model, val.x)
    ae, history = train_feature_autoencoder(feats, val_feats, code_size=code_size, hidden=hidden, epochs=epochs,
                                            batch_size=batch_size, learning_rate=learning_rate, patience=patience,
                                            seed=seed)
    ae.trainable = False
    defended = compose(clone_part(cnn, trainable=False), clone_part(dnn, trainable=False), between=[ae],
                       name=f"{model.name}_middle_ae")
    info = {"code_size": code_size, "hidden": list(hidden), "n_features": int(feats.shape[1]),
            "epochs_run": len(history["loss"]), **{f"{k}_mse": v for k, v in best_epoch_losses(history).items()},
            "mse_scale": "features / their std"}  # the loss's unit scale, comparable across backbones
    return DefenseResult("middle-ae", defended, info, history)
