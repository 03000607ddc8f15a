"""Initial autoencoder: a convolutional autoencoder trained on clean images, inserted before `cnn`.

It maps an input back towards clean-looking images before the unchanged classifier sees it,
removing part of a perturbation it never learnt to reproduce.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from advkeras.data.dataset import Dataset
from advkeras.defenses.autoencoders.fitting import best_epoch_losses, fit_arrays
from advkeras.defenses.cloning import clone_part, plain_parts
from advkeras.defenses.result import DefenseResult
from advkeras.errors import InputError
from advkeras.models import check_images, check_logits, compose

L = tf.keras.layers


def build_conv_autoencoder(input_shape: Sequence[int], *, filters: Sequence[int] = (32, 16),
                           name: str = "initial_ae") -> tf.keras.Model:
    """[0, 1] image -> conv/pool encoder (one 2x down-sampling) -> conv/up-sampling decoder -> [0, 1] image."""
    h, w, c = (int(d) for d in input_shape)
    if len(filters) != 2 or min(filters) < 1:
        raise InputError(f"filters must be two positive widths (outer, code), got {list(filters)}.")
    inp = L.Input((h, w, c), name="image")
    x = L.Conv2D(filters[0], 3, padding="same", activation="relu", name="enc_conv1")(inp)
    x = L.MaxPooling2D(2, padding="same", name="enc_pool")(x)
    x = L.Conv2D(filters[1], 3, padding="same", activation="relu", name="code")(x)
    x = L.UpSampling2D(2, name="dec_upsample")(x)
    x = L.Conv2D(filters[0], 3, padding="same", activation="relu", name="dec_conv1")(x)
    x = L.Conv2D(c, 3, padding="same", activation="sigmoid", name="reconstruction")(x)
    # Odd sizes come back one pixel larger after pooling with padding and up-sampling.
    extra_h, extra_w = x.shape[1] - h, x.shape[2] - w
    if extra_h or extra_w:
        x = L.Cropping2D(((0, extra_h), (0, extra_w)), name="crop")(x)
    return tf.keras.Model(inp, x, name=name)


def initial_autoencoder(model: tf.keras.Model, train: Dataset, val: Dataset | None = None, *,
                        filters: Sequence[int] = (32, 16), noise: float = 0.0, epochs: int = 15,
                        batch_size: int = 64, learning_rate: float = 1e-3, patience: int = 4,
                        seed: int = 0) -> DefenseResult:
    """image -> initial_ae -> cnn -> dnn, with copies of the original (frozen) cnn and dnn.

    `noise` > 0 trains a denoising autoencoder (Gaussian noise of that std on its inputs).
    """
    check_logits(model)
    x = check_images(train.x, model, name="training images")
    cnn, dnn = plain_parts(model)
    tf.keras.utils.set_random_seed(seed)
    ae = build_conv_autoencoder(x.shape[1:], filters=filters)
    inputs = x
    if noise > 0:
        rng = np.random.default_rng(seed)
        inputs = np.clip(x + rng.normal(0, noise, x.shape), 0, 1).astype(np.float32)
    val_x = None if val is None or not len(val) else check_images(val.x, model, name="validation images")
    val_data = None if val_x is None else (val_x, val_x)
    history = fit_arrays(ae, inputs, x, val_data, loss=tf.keras.losses.MeanSquaredError(), epochs=epochs,
                         batch_size=batch_size, learning_rate=learning_rate, patience=patience, seed=seed,
                         desc="initial autoencoder")
    ae.trainable = False
    defended = compose(clone_part(cnn, trainable=False), clone_part(dnn, trainable=False), before=[ae],
                       name=f"{model.name}_initial_ae")
    info = {"filters": list(filters), "noise": noise, "epochs_run": len(history["loss"]),
            **{f"{k}_mse": v for k, v in best_epoch_losses(history).items()}}
    return DefenseResult("initial-ae", defended, info, history)
