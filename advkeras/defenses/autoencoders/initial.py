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
from advkeras.models import check_images, check_logits, compose, predict_logits
from advkeras.seeding import preserved_global_rng, seed_weights

L = tf.keras.layers


@preserved_global_rng()
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


@preserved_global_rng()
def initial_autoencoder(model: tf.keras.Model, train: Dataset, val: Dataset | None = None, *,
                        filters: Sequence[int] = (32, 16), noise: float = 0.0, epochs: int = 15,
                        batch_size: int = 64, learning_rate: float = 1e-3, patience: int = 4,
                        consistency: float = 0.0, seed: int = 0) -> DefenseResult:
    """image -> initial_ae -> cnn -> dnn, with copies of the original (frozen) cnn and dnn.

    `noise` > 0 trains a denoising autoencoder (Gaussian noise of that std on its inputs).
    `consistency` > 0 adds that weight times the KL divergence between the frozen classifier's answer on
    the reconstruction and on the clean image: a pixel loss alone lets a small autoencoder blur away what
    the classifier reads (IDC patches blurred until every answer is "no IDC"), which keeps the MSE low
    and makes the defense a constant predictor.
    """
    if consistency < 0:
        raise InputError(f"consistency must be >= 0 (0: pixel loss only), got {consistency}.")
    check_logits(model)
    x = check_images(train.x, model, name="training images")
    cnn, dnn = plain_parts(model)
    ae = seed_weights(build_conv_autoencoder(x.shape[1:], filters=filters), seed)
    inputs = x
    if noise > 0:
        rng = np.random.default_rng(seed)
        inputs = np.clip(x + rng.normal(0, noise, x.shape), 0, 1).astype(np.float32)
    val_x = None if val is None or not len(val) else check_images(val.x, model, name="validation images")
    if consistency > 0:
        history = _fit_consistent(ae, model, inputs, x, val_x, weight=consistency, epochs=epochs,
                                  batch_size=batch_size, learning_rate=learning_rate, patience=patience, seed=seed)
    else:
        history = fit_arrays(ae, inputs, x, None if val_x is None else (val_x, val_x),
                             loss=tf.keras.losses.MeanSquaredError(), epochs=epochs, batch_size=batch_size,
                             learning_rate=learning_rate, patience=patience, seed=seed, desc="initial autoencoder")
    ae.trainable = False
    defended = compose(clone_part(cnn, trainable=False), clone_part(dnn, trainable=False), before=[ae],
                       name=f"{model.name}_initial_ae")
    info = {"filters": list(filters), "noise": noise, "consistency": consistency, "epochs_run": len(history["loss"]),
            **_kept_mse(history)}
    return DefenseResult("initial-ae", defended, info, history)


def _fit_consistent(ae: tf.keras.Model, model: tf.keras.Model, inputs: np.ndarray, x: np.ndarray,
                    val_x: np.ndarray | None, *, weight: float, epochs: int, batch_size: int, learning_rate: float,
                    patience: int, seed: int) -> dict[str, list[float]]:
    """Fit `ae` on MSE(x, ae(inputs)) + weight * KL(p(x) || p(ae(inputs))), p the frozen classifier's softmax."""
    frozen = tf.keras.models.clone_model(model)
    frozen.set_weights(model.get_weights())
    frozen.trainable = False
    inp = L.Input(x.shape[1:], name="image")
    rec = L.Activation("linear", name="reconstruction")(ae(inp))  # names the MSE term in the history
    trainer = tf.keras.Model(inp, {"reconstruction": rec, "answer": L.Softmax(name="answer")(frozen(rec, training=False))})
    loss = {"reconstruction": tf.keras.losses.MeanSquaredError(), "answer": tf.keras.losses.KLDivergence()}
    targets = {"reconstruction": x, "answer": tf.nn.softmax(predict_logits(model, x)).numpy()}
    val = None if val_x is None else (val_x, {"reconstruction": val_x,
                                              "answer": tf.nn.softmax(predict_logits(model, val_x)).numpy()})
    return fit_arrays(trainer, inputs, targets, val, loss=loss, loss_weights={"reconstruction": 1.0, "answer": weight},
                      epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience, seed=seed,
                      desc="initial autoencoder (classifier-consistent)")


def _kept_mse(history: dict[str, list[float]]) -> dict[str, float | None]:
    """Pixel MSE (train, val) of the kept epoch. The consistent fit logs MSE as reconstruction_loss but
    keeps the epoch of the lowest total validation loss, so the epoch is chosen on the total first."""
    if "reconstruction_loss" not in history:
        return {f"{k}_mse": v for k, v in best_epoch_losses(history).items()}
    val = history.get("val_loss")
    best = int(np.argmin(val)) if val else len(history["loss"]) - 1
    val_mse = history.get("val_reconstruction_loss")
    return {"train_mse": float(history["reconstruction_loss"][best]),
            "val_mse": float(val_mse[best]) if val_mse else None,
            "val_consistency_kl": float(history["val_answer_loss"][best]) if "val_answer_loss" in history else None}
