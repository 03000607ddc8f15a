"""Checkpoints of `advkeras assess`, so a killed assessment resumes where it stopped.

After every stage the run writes OUT/checkpoint/: `state.json` (the run's fingerprint, the stages done and
their seconds, `metrics` and `figures` so far), one `.npz` per attack result (`ctx.adversarials`, written as
each attack finishes, so a kill inside the attacks stage keeps the finished ones) and one `.keras` per
defended model (`ctx.defended`). The trained model is OUT/model.keras, which the model stage writes anyway.
Every file is written under a temporary name in the same folder and renamed, and `state.json` is written
last, so a kill at any moment leaves the previous checkpoint whole; temporary files left behind are never
read. The fingerprint (resolved config, seed, op determinism, advkeras and TensorFlow versions, and the
given model file's digest) keeps two different runs from being stitched together.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import platform
import re
from pathlib import Path
from typing import Any

import tensorflow as tf

from advkeras import __version__
from advkeras.attacks.result import AttackResult, load_result, save_result
from advkeras.errors import InputError
from advkeras.models import load_model, save_model
from advkeras.runs import jsonable, write_json

log = logging.getLogger(__name__)

FOLDER = "checkpoint"
STATE = "state.json"
FORMAT = 1


def fingerprint(config: dict, seed: int, deterministic: bool) -> dict[str, Any]:
    """What makes two runs the same run: a checkpoint resumes only under an equal fingerprint."""
    model = config.get("model")
    return {"config": plain(config), "seed": int(seed), "deterministic": bool(deterministic),
            "advkeras": __version__, "tensorflow": tf.__version__, "python": platform.python_version(),
            "model_sha256": _file_sha256(Path(model)) if model and Path(model).is_file() else None}


def digest(fp: dict) -> str:
    """sha256 of the fingerprint as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Checkpoint:
    """The checkpoint folder of one assessment output folder `out`, for the run with fingerprint `fp`."""

    def __init__(self, out: str | Path, fp: dict) -> None:
        self.folder = Path(out) / FOLDER
        self.fingerprint = fp
        self.resumed_attacks: list[str] = []  # attack results of an unfinished attacks stage read back
        self._defended_saved: set[str] = set()  # defended models on disk that match ctx.defended

    @property
    def state_path(self) -> Path:
        return self.folder / STATE

    def exists(self) -> bool:
        return self.state_path.is_file()

    def read(self) -> dict:
        """The stored state, refused with what differs when it belongs to another run."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.state_path} cannot be read ({exc}); pass --force without --resume to start "
                             "the assessment again (it replaces the folder), or choose another --out.") from exc
        if state.get("format") != FORMAT or state.get("digest") != digest(self.fingerprint):
            differs = _differences(state.get("fingerprint") or {}, self.fingerprint) or ["checkpoint format"]
            raise InputError(f"{self.folder.parent} holds a checkpoint of another run (it differs in: "
                             f"{', '.join(differs)}), which cannot be resumed with these settings; run with the "
                             "checkpoint's settings, pass --force without --resume to replace that folder, or "
                             "choose another --out.")
        return state

    def start(self) -> dict:
        """The empty state of a new run; written with the first stage worth resuming (the model), before any
        attack or defended model is, so every file written later is this run's."""
        return self._state([], {}, {}, {}, [], [])

    def restore(self, ctx, state: dict) -> None:
        """Put a checkpoint's metrics, figures, attack results and defended models back on `ctx`."""
        ctx.metrics.update(state["metrics"])
        ctx.figures.update(state["figures"])
        for key in state["adversarials"]:
            ctx.adversarials[key] = self._read(self.attack_path(key), load_result)
        for name in state["defended"]:
            ctx.defended[name] = self._read(self.defended_path(name), load_model)
            self._defended_saved.add(name)

    def commit(self, ctx, completed: list[str], stage_seconds: dict[str, float]) -> None:
        """Record that the stages in `completed` are done: their files first, then `state.json`."""
        for key, res in ctx.adversarials.items():
            self.save_attack(key, res)
        for name, model in ctx.defended.items():
            if name not in self._defended_saved:  # saved once, by the commit after the stage that built it
                save_model(model, self.defended_path(name), overwrite=True)  # atomic
                self._defended_saved.add(name)
        self._write_state(self._state(completed, stage_seconds, ctx.metrics, ctx.figures, list(ctx.adversarials),
                                      list(ctx.defended)))

    def load_attack(self, key: str) -> AttackResult | None:
        """The result of attack `key` ("name@eps") if this run saved it before it was killed, else None."""
        path = self.attack_path(key)
        if not path.is_file():
            return None
        self.resumed_attacks.append(key)
        return self._read(path, load_result)

    def save_attack(self, key: str, res: AttackResult) -> None:
        """Save attack `key` unless it is on disk already (then it is this run's: the folder is fingerprinted)."""
        path = self.attack_path(key)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_result(res, path)  # atomic

    def attack_path(self, key: str) -> Path:
        return self.folder / "attacks" / f"{_safe(key)}.npz"

    def defended_path(self, name: str) -> Path:
        return self.folder / "defended" / f"{_safe(name)}.keras"

    def _state(self, completed: list[str], stage_seconds: dict, metrics: dict, figures: dict,
               adversarials: list[str], defended: list[str]) -> dict:
        return {"format": FORMAT, "digest": digest(self.fingerprint), "fingerprint": self.fingerprint,
                "completed": list(completed), "stage_seconds": dict(stage_seconds), "metrics": metrics,
                "figures": figures, "adversarials": adversarials, "defended": defended}

    def _write_state(self, state: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # NaN stays NaN (metrics.json writes null): later stages and the report see what an unbroken run sees
        write_json(self.state_path, state, keep_nonfinite=True)  # atomic

    def _read(self, path: Path, loader):
        try:
            return loader(path)
        except Exception as exc:  # a missing or damaged file: the checkpoint cannot be trusted
            raise InputError(f"checkpoint file {path} cannot be read ({exc.__class__.__name__}: {str(exc)[:200]}); "
                             "pass --force without --resume to start the assessment again.") from exc


def _safe(name: str) -> str:
    """A file name for an attack key or defense name: readable, and unique through a short digest."""
    readable = re.sub(r"[^A-Za-z0-9@._-]", "_", name)
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def plain(obj: Any) -> Any:
    """`obj` as a checkpoint stores it: numpy values, tuples and paths as JSON types, NaN and inf kept
    (`runs.write_json` turns them into null for metrics.json)."""
    return jsonable(obj, keep_nonfinite=True)


def _differences(stored: dict, fp: dict, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ (e.g. `config.train.epochs`, `seed`)."""
    out = []
    for key in sorted(set(stored) | set(fp)):
        a, b, name = stored.get(key), fp.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, name + ".")
        elif a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
            out.append(f"{name} ({a!r} there, {b!r} now)" if len(repr(a)) + len(repr(b)) < 80 else name)
    return out


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
