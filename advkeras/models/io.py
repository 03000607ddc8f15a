"""Saving and loading `.keras` models without ever overwriting a user's file by surprise."""
from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from advkeras.errors import ModelError


def save_model(model: tf.keras.Model, path: str | Path, *, overwrite: bool = False) -> Path:
    """Save as a `.keras` file; refuse to replace an existing file unless `overwrite=True`.

    Written under a temporary name in the same folder and renamed, so a killed run leaves the old file or the
    new one, never half a model (an interrupted assessment reloads it when it resumes)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelError(f"{path}: save models with a '.keras' suffix (the Keras v3 format).")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --force) to replace it, "
                              "or choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")  # Keras wants the .keras suffix
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_model(path: str | Path) -> tf.keras.Model:
    """Load a `.keras` (or SavedModel/h5) Keras model, with a clear error for missing or corrupt files."""
    import advkeras.models.layers  # noqa: F401  (registers custom layers before deserializing)

    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file {path} does not exist; train one with `advkeras train` first.")
    try:
        return tf.keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises many types for corrupt files; none of them say which file
        raise ModelError(f"{path} could not be loaded as a Keras model ({exc.__class__.__name__}: "
                         f"{str(exc)[:200]}). Is it a complete .keras file written by model.save()?") from exc
