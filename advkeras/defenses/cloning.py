"""Copies of a classifier's parts, so defenses never modify the user's model in place."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from advkeras.errors import ModelError
from advkeras.models import check_images, check_logits, compose, get_parts
from advkeras.seeding import preserved_global_rng


def plain_parts(model: tf.keras.Model) -> tuple[tf.keras.Model, tf.keras.Model]:
    """(cnn, dnn) of a model that is exactly image -> cnn -> dnn, the form defenses rebuild.

    A model with more top-level layers (a preprocessing layer, an already inserted autoencoder)
    would lose them silently when a defense rebuilds it from its parts, so it is refused."""
    cnn, dnn = get_parts(model)
    extra = [layer.name for layer in model.layers
             if not isinstance(layer, tf.keras.layers.InputLayer) and layer not in (cnn, dnn)]
    if extra:
        raise ModelError(f"defenses rebuild {model.name!r} as image -> cnn -> dnn, which would drop its top-level "
                         f"layer(s) {', '.join(extra)}; move them into the 'cnn' part (e.g. as its first layers) "
                         "or defend the undefended original.")
    return cnn, dnn


@preserved_global_rng()  # clone_model seeds the copy's initializers from Python's `random`
def clone_part(part: tf.keras.Model, *, trainable: bool = True, copy_weights: bool = True) -> tf.keras.Model:
    """A new model with `part`'s architecture and name (and weights unless `copy_weights=False`)."""
    import advkeras.models.layers  # noqa: F401  (custom layers must be registered before cloning)

    clone = tf.keras.models.clone_model(part)
    if copy_weights:
        clone.set_weights(part.get_weights())
    clone.trainable = trainable
    return clone


def clone_classifier(model: tf.keras.Model, *, copy_weights: bool = True, name: str | None = None) -> tf.keras.Model:
    """image -> cnn -> dnn rebuilt from copies of `model`'s parts (fresh weights if `copy_weights=False`)."""
    check_logits(model)
    cnn, dnn = plain_parts(model)
    return compose(clone_part(cnn, copy_weights=copy_weights), clone_part(dnn, copy_weights=copy_weights),
                   name=name or model.name)


def batched(model: tf.keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """`model` outputs for `x` in inference mode, batch by batch (no Keras predict overhead on small inputs)."""
    out = [model(x[i:i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, *model.output_shape[1:]), np.float32)


def cnn_features(model: tf.keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The `cnn` part's output (the flat features the `dnn` reads) for a batch of images."""
    cnn, _ = get_parts(model)
    return batched(cnn, check_images(x, model), batch_size)


def head_units(dnn: tf.keras.Model) -> tuple[int, ...]:
    """Widths of a dense head's hidden layers (every Dense layer but the last)."""
    dense = [layer for layer in dnn.layers if isinstance(layer, tf.keras.layers.Dense)]
    return tuple(int(layer.units) for layer in dense[:-1])
