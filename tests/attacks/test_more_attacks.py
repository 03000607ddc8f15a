"""foolbox L2/minimisation/decision-based attacks and ART attacks, on the small MNIST LeNet."""
import builtins

import numpy as np
import pytest

from advkeras.attacks import generate, get_attack
from advkeras.errors import InputError


@pytest.fixture(scope="module")
def digits(correct_digits):
    return correct_digits(64, 8)


def test_fgm_respects_its_l2_budget(mnist_model, digits):
    x, y = digits
    res = generate(mnist_model, x, y, "fgm", eps=1.5, progress=False)
    assert res.backend == "foolbox" and res.l2.max() <= 1.5 + 1e-4 and res.l2.min() > 1.0


@pytest.mark.parametrize("attack,params", [("deepfool", {}), ("cw", {"binary_search_steps": 2, "steps": 50, "initial_const": 1.0})])
def test_minimisation_attacks_unbounded_and_clipped(mnist_model, digits, attack, params):
    x, y = digits
    free = generate(mnist_model, x, y, attack, eps=None, progress=False, **params)
    assert free.success_rate >= 0.75 and np.isfinite(free.l2).all()
    budget = float(np.median(free.l2[free.success]))
    capped = generate(mnist_model, x, y, attack, eps=budget, progress=False, **params)
    assert capped.l2.max() <= budget + 1e-3
    assert capped.success.sum() <= free.success.sum() and capped.success_rate < 1.0


def test_targeted_cw_reaches_the_target(mnist_model, digits):
    # CW works in tanh space, where pixels exactly at 0 or 1 (most of MNIST) get no gradient;
    # lifting the images off the bounds lets it change the background, as it must to reach a target.
    x, y = 0.05 + 0.9 * digits[0], digits[1]
    target = (y + 1) % 10
    res = generate(mnist_model, x, y, "cw", target=target, progress=False, binary_search_steps=1, steps=100,
                   initial_const=100.0)
    assert res.success_rate >= 0.75 and (res.pred_adv[res.success] == target[res.success]).all()


@pytest.mark.parametrize("attack,params", [
    ("boundary", {"steps": 60}),
    ("hopskipjump", {"steps": 2, "initial_gradient_eval_steps": 10, "max_gradient_eval_steps": 20})])
def test_decision_based_attacks_count_queries(mnist_model, digits, attack, params):
    x, y = digits[0][:4], digits[1][:4]
    res = generate(mnist_model, x, y, attack, eps=None, progress=False, seed=1, **params)
    assert res.success.all() and res.queries is not None and res.queries.shape == (4,)
    assert (res.queries > params["steps"]).all()
    assert res.summary()["mean_queries"] == pytest.approx(res.queries.mean())


def test_targeted_boundary_starts_from_target_class_images(mnist_model, mnist_splits):
    x, y = mnist_splits[2].x[:40], mnist_splits[2].y[:40]
    target = np.where(y == 3, 4, 3)
    res = generate(mnist_model, x, y, "boundary", target=target, progress=False, steps=20, batch_size=16)
    assert (res.pred_adv[res.success] == target[res.success]).all() and res.success_rate > 0.9
    with pytest.raises(InputError, match="none of the images passed in class 3"):
        keep = y != 3
        generate(mnist_model, x[keep][:4], y[keep][:4], "boundary", target=np.full(4, 3), progress=False)


def test_art_jsma_targets_next_class_and_changes_few_pixels(mnist_model, digits):
    x, y = digits[0][:3], digits[1][:3]
    res = generate(mnist_model, x, y, "jsma", target=(y + 1) % 10, progress=False, gamma=0.1)
    assert res.backend == "art"
    changed = (np.abs(res.clipped - res.x) > 1e-6).reshape(len(x), -1).sum(1)
    assert (changed <= 0.1 * 784 + 2).all() and changed.max() > 0
    assert (res.pred_adv[res.success] == ((y + 1) % 10)[res.success]).all() and res.success.any()


def test_art_onepixel_changes_at_most_one_pixel(mnist_model, digits):
    x, y = digits[0][:2], digits[1][:2]
    res = generate(mnist_model, x, y, "onepixel", progress=False, max_iter=1)
    changed = (np.abs(res.clipped - res.x) > 1e-6).reshape(len(x), -1).sum(1)
    assert (changed <= 1).all() and (res.queries > 100).all()


def test_art_square_stays_in_the_linf_ball(mnist_model, digits):
    x, y = digits
    res = generate(mnist_model, x, y, "square", eps=0.3, progress=False, max_iter=30)
    assert res.linf.max() <= 0.3 + 1e-6 and res.success.any() and (res.queries > 0).all()


def test_missing_art_names_the_extra(mnist_model, digits, monkeypatch):
    real_import = builtins.__import__

    def no_art(name, *args, **kwargs):
        if name == "art" or name.startswith("art."):
            raise ImportError("No module named 'art'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_art)
    with pytest.raises(InputError, match=r"pip install advkeras\[bench\]"):
        generate(mnist_model, *digits, "jsma", progress=False)


def test_eps_is_checked_in_the_attack_norm(mnist_model, digits):
    x, y = digits
    with pytest.raises(InputError, match="L0 attack"):
        generate(mnist_model, x, y, "jsma", eps=0.1)
    with pytest.raises(InputError, match=r"L2 eps .* \(0, 28\]"):
        generate(mnist_model, x, y, "fgm", eps=40.0)
    with pytest.raises(InputError, match="untargeted only"):
        generate(mnist_model, x, y, "deepfool", target=(y + 1) % 10)
    assert "steps=50" in repr(get_attack("deepfool")) and get_attack("cw").params["steps"] == 100
