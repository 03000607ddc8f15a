"""Training and evaluating classifiers with a tf.data pipeline, early stopping and one seed."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.data.dataset import Dataset
from advkeras.data.files import ImageFiles, is_lazy
from advkeras.models.checks import check_images, check_logits
from advkeras.models.metrics import classification_metrics
from advkeras.seeding import derive_seed, preserved_global_rng, seed_random_layers


@dataclass
class TrainResult:
    """What `train_classifier` returns: the trained model, its history and held-out metrics."""

    model: tf.keras.Model
    history: dict[str, list[float]]
    metrics: dict = field(default_factory=dict)


def _augment(x: tf.Tensor, y: tf.Tensor, key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    # Stateless ops drawn from the element's own `key` (shape [2]): stateful random ops in a parallel
    # map give each image whichever draw its thread reaches first, so runs would differ.
    keys = tf.unstack(tf.random.experimental.stateless_split(key, 7))
    # Histology patches have no canonical orientation, so flips and 90-degree turns are free data.
    x = tf.image.stateless_random_flip_left_right(x, keys[0])
    x = tf.image.stateless_random_flip_up_down(x, keys[1])
    x = tf.image.rot90(x, tf.random.stateless_uniform((), keys[2], 0, 4, dtype=tf.int32))
    # Stain and scanner differences between patients show up as colour shifts; jitter them so
    # held-out patients look less foreign.
    x = tf.image.stateless_random_brightness(x, 0.1, keys[3])
    x = tf.image.stateless_random_contrast(x, 0.8, 1.2, keys[4])
    x = tf.image.stateless_random_saturation(x, 0.7, 1.3, keys[5])
    x = tf.image.stateless_random_hue(x, 0.05, keys[6])
    return tf.clip_by_value(x, 0.0, 1.0), y


def _flip(x: tf.Tensor, y: tf.Tensor, key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.image.stateless_random_flip_left_right(x, key), y


def _with_keys(pipe: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """(x, y) -> (x, y, key): a stateless-op key per element, new every epoch, from `seed` alone."""
    draws = tf.data.Dataset.random(seed=derive_seed(seed, "augment"), rerandomize_each_iteration=True)
    keys = draws.map(lambda r: tf.stack([r, tf.constant(seed, tf.int64)]))
    return tf.data.Dataset.zip((pipe, keys)).map(lambda xy, key: (*xy, key))


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-sample weights that give every class the same total weight (mean weight 1)."""
    counts = np.bincount(y)
    present = counts > 0
    per_class = np.where(present, len(y) / (present.sum() * np.maximum(counts, 1)), 0.0)
    return per_class[y].astype(np.float32)


def make_pipeline(ds: Dataset, *, batch_size: int, shuffle: bool, augment: bool, seed: int,
                  balanced: bool = False) -> tf.data.Dataset:
    """tf.data pipeline over an in-memory Dataset; `balanced` adds class-balancing sample weights.

    Shuffling and augmentation depend only on `seed` (an op seed and stateless ops), never on TF's
    global seed being set, so they repeat under op determinism."""
    # Images on disk travel as paths (shuffled cheaply, whole set) and are decoded after the shuffle, in
    # parallel: memory stays bounded by the prefetched batches whatever the number of images.
    images, decode = (ds.x.paths, ds.x.decoder()) if is_lazy(ds.x) else (ds.x, None)
    if balanced:
        pipe = tf.data.Dataset.from_tensor_slices((images, ds.y, balanced_weights(ds.y)))
        if decode is not None:
            pipe = pipe.map(lambda p, y, w: (decode(p), y, w), num_parallel_calls=tf.data.AUTOTUNE)
        return pipe.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    pipe = tf.data.Dataset.from_tensor_slices((images, ds.y))
    if shuffle:
        pipe = pipe.shuffle(len(ds), seed=seed, reshuffle_each_iteration=True)
    if decode is not None:
        pipe = pipe.map(lambda p, y: (decode(p), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment:
        square = ds.x.shape[1] == ds.x.shape[2]
        pipe = _with_keys(pipe, seed).map(_augment if square else _flip, num_parallel_calls=tf.data.AUTOTUNE)
    return pipe.batch(batch_size).prefetch(tf.data.AUTOTUNE)


class _TqdmEpochs(tf.keras.callbacks.Callback):
    """An epoch bar; with `batches_per_epoch` >= BATCH_BAR_FROM (a large data set) also a batch bar with the
    epoch's ETA, since one epoch then takes minutes to hours."""

    BATCH_BAR_FROM = 200

    def __init__(self, epochs: int, batches_per_epoch: int = 0):
        super().__init__()
        self.bar = tqdm(total=epochs, desc="training", unit="epoch")
        self.batches = batches_per_epoch if batches_per_epoch >= self.BATCH_BAR_FROM else 0
        self.inner = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.batches:
            self.inner = tqdm(total=self.batches, desc=f"epoch {epoch + 1}", unit="batch", leave=False)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.inner is not None:
            self.inner.update(1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.inner is not None:
            self.inner.close()
        logs = logs or {}
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if "acc" in k or k == "loss"})
        self.bar.update(1)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.bar.close()


@preserved_global_rng()
def train_classifier(model: tf.keras.Model, train: Dataset, val: Dataset | None = None, *, epochs: int = 20,
                     batch_size: int = 64, learning_rate: float = 1e-3, patience: int = 4,
                     augment: bool = False, seed: int = 0, test: Dataset | None = None) -> TrainResult:
    """Fit `model` (logits out) with Adam and cross-entropy; early stopping on validation loss
    restores the best weights. Held-out metrics are computed on `test` when given.

    Shuffling, augmentation and Dropout masks come from `seed` alone; the caller's global random
    state is neither set nor moved (see `advkeras.seeding`)."""
    check_logits(model)
    check_images(_head(train.x), model, name="training images")
    if val is not None and len(val):
        check_images(_head(val.x), model, name="validation images")
    seed_random_layers(model, seed)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], weighted_metrics=[])  # the balanced val weights act on the loss only
    callbacks: list[tf.keras.callbacks.Callback] = [_TqdmEpochs(epochs, -(-len(train) // batch_size))]
    val_pipe = None
    if val is not None and len(val):
        # Validation patients are few and often one-class (IDC): weigh classes equally so early stopping
        # does not pick the epoch that best fits the majority class of two patients.
        val_pipe = make_pipeline(val, batch_size=batch_size, shuffle=False, augment=False, seed=seed, balanced=True)
        callbacks.append(tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                                          restore_best_weights=True))
    hist = model.fit(make_pipeline(train, batch_size=batch_size, shuffle=True, augment=augment, seed=seed),
                     validation_data=val_pipe, epochs=epochs, verbose=0, callbacks=callbacks)
    metrics = evaluate_classifier(model, test) if test is not None else {}
    return TrainResult(model, {k: [float(v) for v in vs] for k, vs in hist.history.items()}, metrics)


def _head(x, n: int = 256):
    """The images to validate: all of an array, the first `n` of a file index (decoding every file of a large
    set only to check it would cost what streaming saves; the decoder checks each image's size anyway)."""
    return x[:n] if is_lazy(x) else x


def predict_logits(model: tf.keras.Model, x: np.ndarray | ImageFiles, batch_size: int = 256) -> np.ndarray:
    """Logits for a batch of images, in inference mode, without Keras' per-call overhead on small inputs.
    Images on disk are decoded batch by batch in a parallel tf.data pipeline."""
    if is_lazy(x):
        pipe = tf.data.Dataset.from_tensor_slices(x.paths).map(x.decoder(), num_parallel_calls=tf.data.AUTOTUNE)
        batches = pipe.batch(batch_size).prefetch(2)
        out = [model(b, training=False).numpy() for b in tqdm(batches, desc="predicting", unit="batch",
                                                               total=-(-len(x) // batch_size),
                                                               disable=len(x) < 50 * batch_size)]
        return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)
    out = [model(x[i:i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def evaluate_classifier(model: tf.keras.Model, ds: Dataset, batch_size: int = 256) -> dict:
    """Accuracy, balanced accuracy, recall and prediction share per class, the confusion matrix (rows: true
    class, columns: predicted) and the groups (patients) scored."""
    pred = predict_logits(model, ds.x, batch_size).argmax(1)
    names = list(ds.class_names) + [str(c) for c in range(ds.n_classes, int(model.output_shape[-1]))]
    return {**classification_metrics(ds.y, pred, names),
            "groups": sorted(map(str, np.unique(ds.groups))) if ds.groups is not None else None}


def split_dataset(ds: Dataset, seed: int = 0) -> tuple[Dataset, Dataset, Dataset]:
    """Patient-wise split when the data has groups (IDC), else a stratified random split."""
    from advkeras.data import split_by_group, split_random

    return (split_by_group if ds.groups is not None else split_random)(ds, seed=seed)


@preserved_global_rng()
def fit_on_dataset(data: str | Dataset, *, backbone: str | None = None, epochs: int = 25, batch_size: int = 64,
                   learning_rate: float = 1e-3, patience: int = 6, seed: int = 0,
                   lazy: bool = True) -> tuple[tf.keras.Model, dict]:
    """Load `data` (sample name, path or Dataset), split it, build and train a classifier. A folder's images
    stay on disk and stream (`lazy`, see `advkeras.data.files`) unless `lazy=False`.

    Returns the model and a metrics dict with the split (groups per split), the training history
    and held-out metrics (accuracy, per-class recall, confusion matrix)."""
    from advkeras.data import load_dataset
    from advkeras.models.zoo import build_classifier, default_backbone

    ds = data if isinstance(data, Dataset) else load_dataset(data, lazy=lazy)
    backbone = backbone or default_backbone(ds.input_shape)
    train, val, test = split_dataset(ds, seed)
    model = build_classifier(backbone, ds.input_shape, ds.n_classes, seed=seed)
    # Augment only where orientation carries no meaning (IDC histology patches).
    result = train_classifier(model, train, val, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                              patience=patience, augment=ds.name == "idc", seed=seed, test=test)
    metrics = {"data": ds.name, "on_disk": ds.lazy, "backbone": backbone, "seed": seed, "epochs_run": len(result.history["loss"]),
               "split": {name: {"n": len(part), "groups": None if part.groups is None else
                                sorted(map(str, np.unique(part.groups)))}
                         for name, part in zip(("train", "val", "test"), (train, val, test))},
               "history": result.history, "test": result.metrics}
    return model, metrics
