"""Encoder defense: the encoder half of the middle autoencoder between `cnn` and a newly trained `dnn`.

The new head only ever sees the autoencoder's code, a compressed view of clean-looking features,
so perturbations the code does not represent cannot steer it.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from advkeras.data.dataset import Dataset
from advkeras.defenses.autoencoders.fitting import fit_arrays
from advkeras.defenses.autoencoders.middle import middle_autoencoder
from advkeras.defenses.cloning import batched, clone_part, cnn_features, head_units, plain_parts
from advkeras.defenses.result import DefenseResult
from advkeras.errors import InputError, ModelError
from advkeras.models import build_dnn, check_logits, compose
from advkeras.seeding import preserved_global_rng, seed_weights


def encoder_of(middle: tf.keras.Model | DefenseResult) -> tf.keras.Model:
    """The "encoder" sub-model of a middle-autoencoder defended model (or of the autoencoder itself)."""
    model = middle.model if isinstance(middle, DefenseResult) else middle
    ae = model if model.name == "middle_ae" else _get(model, "middle_ae")
    return _get(ae, "encoder")


def _get(model: tf.keras.Model, name: str) -> tf.keras.Model:
    try:
        return model.get_layer(name)
    except ValueError:
        raise ModelError(f"{model.name!r} has no {name!r} sub-model; pass the result of "
                         "advkeras.defenses.middle_autoencoder (or its model).") from None


@preserved_global_rng()
def encoder_defense(model: tf.keras.Model, train: Dataset, val: Dataset | None = None, *,
                    middle: tf.keras.Model | DefenseResult | None = None, head: Sequence[int] | None = None,
                    dropout: float = 0.3, epochs: int = 60, batch_size: int = 64, learning_rate: float = 1e-3,
                    patience: int = 8, seed: int = 0, **middle_params) -> DefenseResult:
    """image -> cnn (frozen copy) -> encoder (frozen) -> new "dnn" trained on the codes.

    `middle` reuses an already trained middle autoencoder; otherwise one is trained with
    `middle_params`. The new head has the original head's widths unless `head` is given.
    """
    check_logits(model)
    cnn, dnn = plain_parts(model)
    if middle is None:
        middle = middle_autoencoder(model, train, val, seed=seed, **middle_params)
    elif middle_params:
        raise InputError(f"{', '.join(sorted(middle_params))} configure a new middle autoencoder, but `middle` "
                         "gives a trained one; drop them or drop `middle`.")
    trained = encoder_of(middle)
    width, expected = int(trained.input_shape[-1]), int(cnn.output_shape[-1])
    if width != expected:
        raise InputError(f"the given middle autoencoder reads {width} features but {model.name!r}'s cnn gives "
                         f"{expected}; pass the middle autoencoder built for this model.")
    encoder = clone_part(trained, trainable=False)
    codes = batched(encoder, cnn_features(model, train.x))
    val_data = None
    if val is not None and len(val):
        val_data = (batched(encoder, cnn_features(model, val.x)), val.y)
    new_dnn = seed_weights(build_dnn(codes.shape[1], int(dnn.output_shape[-1]),
                                     head_units(dnn) if head is None else head, dropout, name="dnn"), seed)
    history = fit_arrays(new_dnn, codes, train.y, val_data,
                         loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         metrics=["accuracy"], epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                         patience=patience, seed=seed, desc="encoder head")
    defended = compose(clone_part(cnn, trainable=False), new_dnn, between=[encoder], name=f"{model.name}_encoder")
    info = {"code_size": int(codes.shape[1]), "head": list(head_units(new_dnn)), "epochs_run": len(history["loss"]),
            "val_accuracy": max(history["val_accuracy"]) if "val_accuracy" in history else None}
    return DefenseResult("encoder", defended, info, history)
