"""Generic frozen features: a `cnn` learnt on one task, frozen, under a new `dnn` head for another.

The defense paper's classifier is an ImageNet-pretrained VGG16 used as a fixed feature extractor with a
trained dense head (`build_classifier("vgg16", weights="imagenet")` builds it where the weights are cached).
Where they are not, `pretrain_cnn` learns a convolutional base on other data (e.g. CIFAR-10), and
`frozen_feature_classifier` moves it to the target's image size and puts a new head on it.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from advkeras.data.dataset import Dataset
from advkeras.errors import ModelError
from advkeras.models.parts import compose, get_part
from advkeras.models.training import train_classifier
from advkeras.models.zoo import DEFAULT_HEADS, build_classifier, build_dnn
from advkeras.seeding import preserved_global_rng, seed_weights


def pretrain_cnn(backbone: str, source: Dataset, val: Dataset | None = None, *, epochs: int = 10,
                 learning_rate: float = 1e-3, augment: bool = True, seed: int = 0) -> tuple[tf.keras.Model, dict]:
    """Train `backbone` on `source` (its own classes) and return its `cnn` part and the training history."""
    model = build_classifier(backbone, source.input_shape, source.n_classes, seed=seed)
    fit = train_classifier(model, source, val, epochs=epochs, learning_rate=learning_rate, augment=augment,
                           seed=seed)
    return get_part(model, "cnn"), fit.history


@preserved_global_rng()  # clone_model seeds unseeded initializers from Python's `random`
def resize_cnn(cnn: tf.keras.Model, input_shape: Sequence[int]) -> tf.keras.Model:
    """`cnn`'s architecture rebuilt for `input_shape`, with its weights.

    Convolution and pooling weights do not depend on the image size, so a fully convolutional base (conv,
    pool, then Flatten) moves to any size its pools allow; only the flat feature count changes."""
    shape = tuple(int(d) for d in input_shape)
    if shape[-1] != cnn.input_shape[-1]:
        raise ModelError(f"the cnn reads {cnn.input_shape[-1]}-channel images, not {shape[-1]}; convert the "
                         "images (e.g. grey to RGB) or pretrain on data with as many channels.")
    try:
        moved = tf.keras.models.clone_model(cnn, input_tensors=tf.keras.Input(shape, name="image"))
        moved.set_weights(cnn.get_weights())
    except ValueError as exc:
        raise ModelError(f"the cnn cannot be rebuilt for {shape} images ({exc}); only convolution, pooling and "
                         "flatten layers move to another image size.") from exc
    return moved


@preserved_global_rng()
def frozen_feature_classifier(cnn: tf.keras.Model, input_shape: Sequence[int], n_classes: int, *,
                              head: Sequence[int] | None = None, dropout: float = 0.3, seed: int = 0,
                              backbone: str = "vgg_mini") -> tf.keras.Model:
    """image -> frozen `cnn` (moved to `input_shape`) -> new seeded `dnn` with `n_classes` logits.

    Train it with `train_classifier`: only the head learns. Defenses keep the cnn frozen too (their copies
    keep each part's trainable flag), as the paper's fixed VGG16 was."""
    moved = resize_cnn(cnn, input_shape)
    moved.trainable = False
    dnn = build_dnn(int(moved.output_shape[-1]), n_classes, DEFAULT_HEADS.get(backbone, (128, 64))
                    if head is None else head, dropout)
    seed_weights(dnn, seed)
    return compose(moved, dnn, name=f"frozen_{cnn.name}_classifier")
