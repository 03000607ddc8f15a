"""Export for TF Serving (`saved_models/<name>/<version>/`) and the history state in and out."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from advkeras import __version__
from advkeras.errors import InputError
from advkeras.serving.layout import next_version_dir
from advkeras.serving.signature import ServingModule, serving_module


def export_saved_model(defended: tf.keras.Model | ServingModule, base: str | Path = "saved_models",
                       name: str = "advkeras", *, metadata: dict[str, Any] | None = None, **module_kwargs) -> Path:
    """Write a new version `<base>/<name>/<n+1>/` with a `serving_default` signature
    (inputs `image`, `user_id`; outputs `probabilities`, `label`, `alarm`, `adversarial_probability`,
    `min_distance` and any detector outputs). An existing version is never touched: the export is
    written to a temporary folder and moved into place only when complete."""
    module = defended if isinstance(defended, ServingModule) else serving_module(defended, **module_kwargs)
    target = next_version_dir(base, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tf.saved_model.save(module, str(tmp / "model"), signatures={"serving_default": module.serve})
        extra = tmp / "model" / "assets.extra"
        extra.mkdir(exist_ok=True)
        info = {"advkeras": __version__, "tensorflow": tf.__version__, "input_shape": list(module.input_shape),
                "outputs": list(module.output_names), **(metadata or {})}
        (extra / "advkeras.json").write_text(json.dumps(info, indent=2))
        os.rename(tmp / "model", target)  # atomic on one filesystem; fails rather than overwrite
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def history_state(model: Any) -> dict[str, np.ndarray]:
    """The prediction-similarity history and counters of a ServingModule or a loaded SavedModel."""
    state = getattr(model, "state", None)
    if state is None:
        raise InputError("this object has no similarity state; pass a ServingModule or the result of "
                         "tf.saved_model.load on an advkeras export.")
    # string state (the index store's user ids) as fixed-width bytes, so np.load reads it without pickle
    return {k: np.asarray(v.numpy(), dtype=bytes) if v.dtype == tf.string else v.numpy() for k, v in state.items()}


def save_history(model: Any, path: str | Path, *, overwrite: bool = False) -> Path:
    """Back up the history to `.npz` (e.g. before a restart or a new version)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True or choose another file.")
    np.savez_compressed(path, **history_state(model))
    return path


def load_history(model: Any, path: str | Path) -> None:
    """Restore a history backup into a ServingModule or a loaded SavedModel (same layer configuration)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"history file {path} does not exist.")
    with np.load(path) as saved:
        state = getattr(model, "state", None)
        if state is None:
            raise InputError("this object has no similarity state to restore into.")
        missing = set(state) - set(saved.files)
        if missing:
            raise InputError(f"{path} lacks {sorted(missing)}; was it written by save_history?")
        for k, var in state.items():
            if tuple(saved[k].shape) != tuple(var.shape):
                raise InputError(f"{path}: {k} has shape {saved[k].shape}, the model needs {tuple(var.shape)} "
                                 "(export with the same n_slots, history and thumbnail size).")
            var.assign(saved[k])
