"""Attack names -> classes per backend, and the one entry point `generate`."""
from __future__ import annotations

import inspect

import numpy as np
import tensorflow as tf

from advkeras.attacks import art_backend as art
from advkeras.attacks import foolbox_backend as fbk
from advkeras.attacks import native
from advkeras.attacks.base import Attack
from advkeras.attacks.result import AttackResult
from advkeras.errors import InputError

# backend -> attack name -> class. The first backend listed for a name is its default.
REGISTRY: dict[str, dict[str, type[Attack]]] = {
    "foolbox": {"fgsm": fbk.FoolboxFGSM, "bim": fbk.FoolboxBIM, "pgd": fbk.FoolboxPGD, "fgm": fbk.FoolboxFGM,
                "deepfool": fbk.FoolboxDeepFool, "cw": fbk.FoolboxCW, "boundary": fbk.FoolboxBoundary,
                "hopskipjump": fbk.FoolboxHopSkipJump},
    "native": {"fgsm": native.NativeFGSM, "bim": native.NativeBIM, "pgd": native.NativePGD},
    # ART is imported only when one of its attacks runs (optional extra `bench`).
    "art": {"jsma": art.ArtJSMA, "onepixel": art.ArtOnePixel, "square": art.ArtSquare, "pgd": art.ArtPGD},
}
DEFAULT_BACKEND = ("foolbox", "native", "art")


def attack_names() -> list[str]:
    """Every attack name any backend knows."""
    return sorted({name for table in REGISTRY.values() for name in table})


def get_attack(name: str, backend: str | None = None, **params) -> Attack:
    """An attack object by name; `backend=None` takes the default backend that has it."""
    name = name.lower()
    if backend is not None and backend not in REGISTRY:
        raise InputError(f"unknown backend {backend!r}; choose one of: {', '.join(REGISTRY)}.")
    if name not in attack_names():
        raise InputError(f"unknown attack {name!r}; valid attacks are: {', '.join(attack_names())}.")
    backends = [backend] if backend else [b for b in DEFAULT_BACKEND if b in REGISTRY] + list(REGISTRY)
    for b in backends:
        if name in REGISTRY[b]:
            return _build(REGISTRY[b][name], name, b, params)
    have = [b for b in REGISTRY if name in REGISTRY[b]]
    raise InputError(f"attack {name!r} is not available with backend {backend!r}; it is with: {', '.join(have)}.")


def _build(cls: type[Attack], name: str, backend: str, params: dict) -> Attack:
    """The attack with `params`, refusing names its class does not take (a typo would otherwise be a TypeError)."""
    signature = inspect.signature(cls.__init__).parameters.values()
    if any(v.kind is v.VAR_KEYWORD for v in signature):
        return cls(**params)  # takes any keyword: its own checks apply
    accepted = {v.name for v in signature if v.kind is v.KEYWORD_ONLY}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InputError(f"{name} ({backend}) has no parameter {', '.join(map(repr, unknown))}; it takes: "
                         f"{', '.join(sorted(accepted)) or 'none'}.")
    return cls(**params)


def generate(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, attack: str = "pgd", *,
             eps: float | None = None, backend: str | None = None, target: np.ndarray | None = None,
             batch_size: int = 128, seed: int = 0, progress: bool = True, **params) -> AttackResult:
    """Run one attack on (x, y) and return raw/clipped adversarials, success mask and norms.

    `attack` is a name (see `attack_names()`); `params` go to the attack class (e.g. steps=20).
    Images must be float32 in [0, 1], channels last; the model must output logits.
    """
    return get_attack(attack, backend, **params)(model, x, y, eps=eps, target=target, batch_size=batch_size,
                                                 seed=seed, progress=progress)
