import pytest

from advkeras.attacks import iterative_params
from advkeras.errors import InputError


@pytest.mark.parametrize("steps", [1, 5, 20])
def test_iterative_params_let_the_steps_cross_the_ball_two_and_a_half_times(steps):
    p = iterative_params(steps)
    assert p["steps"] == steps and p["steps"] * p["rel_stepsize"] == pytest.approx(2.5)


def test_iterative_params_refuse_zero_steps():
    with pytest.raises(InputError, match="at least 1"):
        iterative_params(0)
