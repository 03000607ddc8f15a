"""Step rules for the iterative Linf attacks (BIM, PGD) on every backend."""
from __future__ import annotations

import numbers

from advkeras.errors import InputError

MADRY_REACH = 2.5  # steps x relative step: the attack can cross the eps ball 2.5 times (Madry et al.)


def iterative_params(steps: int) -> dict:
    """BIM/PGD parameters for `steps` steps of 2.5 eps / steps each (Madry et al.'s rule), so the attack
    can cross the eps ball whatever the step count (foolbox's PGD default, eps / 30, assumes 40 steps
    and barely leaves the random start with 10). Every backend's BIM and PGD now apply this rule when
    no step is given, so this only spells it out for configs and reports."""
    return {"steps": steps, "rel_stepsize": rel_stepsize_for(steps)}


def rel_stepsize_for(steps: int, rel_stepsize: float | None = None) -> float:
    """The step (a fraction of eps) for `steps` steps: `rel_stepsize` when given, else 2.5 / steps.

    Why a rule and not a constant: a fixed step silently weakens the attack when the user lowers the
    step count (20 steps of foolbox's eps / 30 travel at most 0.67 eps from the start).
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise InputError(f"steps must be at least 1, got {steps!r}.")
    if rel_stepsize is None:
        return MADRY_REACH / int(steps)
    if not rel_stepsize > 0:
        raise InputError(f"rel_stepsize must be > 0 (a fraction of eps, e.g. 2.5 / steps), got {rel_stepsize!r}.")
    return float(rel_stepsize)
