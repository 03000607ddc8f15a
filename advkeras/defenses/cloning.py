"""Copies of a classifier's parts, so defenses never modify the user's model in place."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from advkeras.errors import ModelError
from advkeras.models import check_images, check_logits, compose, get_parts
from advkeras.seeding import derive_seed, preserved_global_rng, seed_weights


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


def learns(part: tf.keras.Model) -> bool:
    """Whether training would change `part`. A part frozen before saving loads back with its container
    flag True but every layer frozen, so the flag alone would unfreeze it in a copy."""
    return bool(part.trainable and (part.trainable_weights or not part.weights))


@preserved_global_rng()  # clone_model seeds the copy's initializers from Python's `random`
def clone_part(part: tf.keras.Model, *, trainable: bool | None = None, copy_weights: bool = True) -> tf.keras.Model:
    """A new model with `part`'s architecture and name (and weights unless `copy_weights=False`).

    `trainable=None` keeps `part`'s flag: a frozen feature extractor (the paper's fixed VGG16) stays frozen
    when a defense such as adversarial retraining trains the copy."""
    import advkeras.models.layers  # noqa: F401  (custom layers must be registered before cloning)

    clone = tf.keras.models.clone_model(part)
    if copy_weights:
        clone.set_weights(part.get_weights())
    clone.trainable = learns(part) if trainable is None else trainable
    return clone


def clone_classifier(model: tf.keras.Model, *, copy_weights: bool = True, name: str | None = None) -> tf.keras.Model:
    """image -> cnn -> dnn rebuilt from copies of `model`'s parts (fresh weights if `copy_weights=False`,
    except in a frozen part: nothing would relearn it, so it keeps its weights)."""
    check_logits(model)
    cnn, dnn = plain_parts(model)
    return compose(*(clone_part(p, copy_weights=copy_weights or not learns(p)) for p in (cnn, dnn)),
                   name=name or model.name)


def reseed_trainable(model: tf.keras.Model, seed: int) -> tf.keras.Model:
    """Fresh seeded initial weights for `model`'s trainable parts; a frozen part (pretrained features) keeps
    its own. With every part trainable this is `seed_weights(model, seed)`."""
    cnn, dnn = get_parts(model)
    if learns(cnn) and learns(dnn):
        return seed_weights(model, seed)
    for part in (cnn, dnn):
        if learns(part):
            seed_weights(part, derive_seed(seed, part.name))
    return model


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
