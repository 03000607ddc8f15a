"""Step rules for the iterative Linf attacks (BIM, PGD) on every backend."""
from __future__ import annotations

from advkeras.errors import InputError


def iterative_params(steps: int) -> dict:
    """BIM/PGD parameters for `steps` steps of 2.5 eps / steps each (Madry et al.'s rule), so the attack
    can cross the eps ball whatever the step count (foolbox's PGD default, eps / 30, assumes 40 steps
    and barely leaves the random start with 10)."""
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}.")
    return {"steps": steps, "rel_stepsize": 2.5 / steps}
