"""Fitting reconstruction models (autoencoders) and small heads with one seed and a progress bar."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.seeding import preserved_global_rng, seed_random_layers


class EpochBar(tf.keras.callbacks.Callback):
    """One tqdm bar per fit, one tick per epoch."""

    def __init__(self, epochs: int, desc: str):
        super().__init__()
        self.bar = tqdm(total=epochs, desc=desc, unit="epoch", leave=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in (logs or {}).items()})
        self.bar.update(1)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.bar.close()


@preserved_global_rng()
def fit_arrays(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, val: tuple[np.ndarray, np.ndarray] | None, *,
               loss: tf.keras.losses.Loss | dict, metrics: list | None = None, epochs: int, batch_size: int,
               learning_rate: float, patience: int, seed: int, desc: str,
               loss_weights: dict | None = None) -> dict[str, list[float]]:
    """Adam fit on in-memory arrays; with `val`, early stopping restores the best weights.

    Batches are shuffled by a tf.data op seeded with `seed` and Dropout masks come from it too;
    Keras' own `shuffle=True` draws from TF's global generator, which advkeras never seeds."""
    seed_random_layers(model, seed)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), loss=loss, loss_weights=loss_weights,
                  metrics=metrics or [])
    callbacks: list[tf.keras.callbacks.Callback] = [EpochBar(epochs, desc)]
    if val is not None and len(val[0]):
        callbacks.append(tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                                          restore_best_weights=True))
    else:
        val = None
    pipe = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    val_pipe = None if val is None else tf.data.Dataset.from_tensor_slices(tuple(val)).batch(batch_size)
    hist = model.fit(pipe.batch(batch_size), validation_data=val_pipe, epochs=epochs, verbose=0, callbacks=callbacks)
    return {k: [float(v) for v in vs] for k, vs in hist.history.items()}


def best_epoch_losses(history: dict) -> dict[str, float | None]:
    """Training and validation loss of the epoch whose weights `fit_arrays` kept (lowest validation
    loss when there is validation data, else the last epoch)."""
    val = history.get("val_loss")
    best = int(np.argmin(val)) if val else len(history["loss"]) - 1
    return {"train": float(history["loss"][best]), "val": float(val[best]) if val else None}
