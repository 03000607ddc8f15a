"""Model zoo: VGG16, a small VGG-style CNN, LeNet, a small DenseNet; each as a `cnn` feature extractor + `dnn` head."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import tensorflow as tf

from advkeras.errors import ModelError
from advkeras.models.layers import CaffePreprocess
from advkeras.seeding import fresh_seed, preserved_global_rng, seed_random_layers, seed_weights

L = tf.keras.layers
BACKBONES = ("vgg16", "vgg_mini", "lenet", "densenet_mini")
# DenseNet classifies globally pooled features directly (no hidden dense layer), as Huang et al. do.
DEFAULT_HEADS = {"vgg16": (256, 128), "vgg_mini": (128, 64), "lenet": (120, 84), "densenet_mini": ()}
_VGG16_NOTOP = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _vgg16_cnn(input_shape: tuple[int, ...], weights: str | None) -> tf.keras.Model:
    if weights not in (None, "imagenet"):
        raise ModelError(f"weights must be None or 'imagenet', got {weights!r}.")
    if weights == "imagenet":
        keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
        cached = keras_home / "models" / _VGG16_NOTOP
        if not cached.is_file():
            raise ModelError(f"VGG16 ImageNet weights are not in the local Keras cache ({cached}) and this "
                             "machine cannot download them. Copy the file there, or use weights=None.")
        weights = str(cached)
    if input_shape[-1] != 3:
        raise ModelError(f"vgg16 needs 3-channel images, got input_shape={input_shape}.")
    inp = L.Input(input_shape, name="image")
    base = tf.keras.applications.VGG16(include_top=False, weights=weights, input_shape=input_shape)
    out = L.Flatten(name="features")(base(CaffePreprocess(name="caffe_preprocess")(inp)))
    return tf.keras.Model(inp, out, name="cnn")


def _vgg_mini_cnn(input_shape: tuple[int, ...]) -> tf.keras.Model:
    inp = L.Input(input_shape, name="image")
    x = inp
    for block, (filters, convs) in enumerate([(32, 2), (64, 2), (128, 2), (128, 1)], start=1):
        for i in range(1, convs + 1):
            x = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{block}_conv{i}")(x)
        x = L.MaxPooling2D(2, name=f"block{block}_pool")(x)
    return tf.keras.Model(inp, L.Flatten(name="features")(x), name="cnn")


def _lenet_cnn(input_shape: tuple[int, ...]) -> tf.keras.Model:
    inp = L.Input(input_shape, name="image")
    x = L.Conv2D(6, 5, padding="same", activation="relu", name="conv1")(inp)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(16, 5, activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(2, name="pool2")(x)
    return tf.keras.Model(inp, L.Flatten(name="features")(x), name="cnn")


def _densenet_mini_cnn(input_shape: tuple[int, ...], growth: int = 12, layers_per_block: int = 4,
                        blocks: int = 3) -> tf.keras.Model:
    """A small DenseNet-BC (Huang et al. 2017): a 3x3 stem, `blocks` dense blocks of BN-ReLU-conv3x3 layers
    each concatenated to its input, 1x1 transitions halving the channels with 2x2 average pooling, then
    BN-ReLU and global average pooling. Defaults: 246 conv channels (the paper's CIFAR-10 DenseNet has 3,272)."""
    inp = L.Input(input_shape, name="image")
    x = L.Conv2D(2 * growth, 3, padding="same", use_bias=False, name="stem_conv")(inp)
    for b in range(1, blocks + 1):
        for i in range(1, layers_per_block + 1):
            h = L.ReLU(name=f"block{b}_relu{i}")(L.BatchNormalization(name=f"block{b}_bn{i}")(x))
            h = L.Conv2D(growth, 3, padding="same", use_bias=False, name=f"block{b}_conv{i}")(h)
            x = L.Concatenate(name=f"block{b}_concat{i}")([x, h])
        if b < blocks:
            h = L.ReLU(name=f"trans{b}_relu")(L.BatchNormalization(name=f"trans{b}_bn")(x))
            h = L.Conv2D(int(x.shape[-1]) // 2, 1, use_bias=False, name=f"trans{b}_conv")(h)
            x = L.AveragePooling2D(2, name=f"trans{b}_pool")(h)
    x = L.ReLU(name="final_relu")(L.BatchNormalization(name="final_bn")(x))
    return tf.keras.Model(inp, L.GlobalAveragePooling2D(name="features")(x), name="cnn")


def default_backbone(input_shape: Sequence[int]) -> str:
    """The zoo's choice when the user names none: LeNet for grey images, vgg_mini for colour ones."""
    return "lenet" if int(input_shape[-1]) == 1 else "vgg_mini"


@preserved_global_rng()
def build_dnn(n_features: int, n_classes: int, head: Sequence[int], dropout: float = 0.3,
              name: str = "dnn") -> tf.keras.Model:
    """Dense head: hidden ReLU layers `dense_1..k` then `logits` (no softmax: models output logits)."""
    inp = L.Input((n_features,), name="features")
    x = inp
    for i, units in enumerate(head, start=1):
        x = L.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = L.Dropout(dropout, name=f"dropout_{i}")(x)
    return tf.keras.Model(inp, L.Dense(n_classes, name="logits")(x), name=name)


def build_classifier(backbone: str, input_shape: Sequence[int], n_classes: int, *,
                     head: Sequence[int] | None = None, weights: str | None = None, dropout: float = 0.3,
                     seed: int | None = None) -> tf.keras.Model:
    """A classifier made of two named sub-models, ``cnn`` (features) and ``dnn`` (dense head).

    Inputs are float32 [0, 1] channels-last images; outputs are logits. `weights="imagenet"`
    (vgg16 only) loads the ImageNet convolutional weights from the local Keras cache.

    The initial weights and Dropout masks come from `seed` alone (`advkeras.seeding.seed_weights`);
    `seed=None` draws a fresh one. No global random state is set or moved.
    """
    if backbone not in BACKBONES:
        raise ModelError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}.")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ModelError(f"input_shape must be (height, width, channels), got {input_shape}.")
    if n_classes < 2:
        raise ModelError(f"n_classes must be at least 2, got {n_classes}.")
    if weights is not None and backbone != "vgg16":
        raise ModelError(f"pretrained weights exist only for vgg16, not {backbone!r}; use weights=None.")
    seed = fresh_seed() if seed is None else seed
    with preserved_global_rng():  # Keras seeds its unseeded initializers from Python's `random`
        if backbone == "vgg16":
            cnn = _vgg16_cnn(input_shape, weights)
        elif backbone == "vgg_mini":
            cnn = _vgg_mini_cnn(input_shape)
        elif backbone == "densenet_mini":
            cnn = _densenet_mini_cnn(input_shape)
        else:
            cnn = _lenet_cnn(input_shape)
        dnn = build_dnn(int(cnn.output_shape[-1]), n_classes, DEFAULT_HEADS[backbone] if head is None else head,
                        dropout)
        inp = L.Input(input_shape, name="image")
        model = tf.keras.Model(inp, dnn(cnn(inp)), name=f"{backbone}_classifier")
    if weights == "imagenet":  # keep the pretrained convolutional weights: only the new head starts from the seed
        seed_weights(dnn, seed)
        return seed_random_layers(model, seed)
    return seed_weights(model, seed)
