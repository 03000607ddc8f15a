import numpy as np
import pytest

from advkeras.attacks import attack_names, generate
from advkeras.errors import InputError, ModelError


def test_success_rises_with_eps_and_norms_respect_budget(idc_model, idc_splits):
    test = idc_splits[2]
    x, y = test.x[:64], test.y[:64]
    rates = []
    for eps in (0.5 / 255, 2 / 255, 8 / 255):
        res = generate(idc_model, x, y, "fgsm", eps=eps, backend="native", progress=False)
        assert res.linf.max() <= eps + 1e-6 and res.clipped.min() >= 0 and res.clipped.max() <= 1
        rates.append(res.success_rate_on_correct)
    assert rates[0] < rates[2] and rates[0] <= rates[1] <= rates[2]


@pytest.mark.parametrize("attack", ["fgsm", "bim", "pgd"])
def test_native_agrees_with_foolbox(idc_model, idc_splits, attack):
    test = idc_splits[2]
    x, y = test.x[:48], test.y[:48]
    kw = {"steps": 10} if attack == "pgd" else {}
    fb = generate(idc_model, x, y, attack, eps=2 / 255, backend="foolbox", progress=False, **kw)
    nat = generate(idc_model, x, y, attack, eps=2 / 255, backend="native", progress=False, **kw)
    assert abs(fb.success_rate - nat.success_rate) <= 0.05
    if attack != "pgd":  # deterministic attacks: same images up to float noise
        assert np.mean(np.abs(fb.clipped - nat.clipped) > 1e-4) < 0.01


def test_targeted_attack_reaches_target(mnist_model, mnist_splits):
    test = mnist_splits[2]
    x, y = test.x[:32], test.y[:32]
    target = (y + 1) % 10
    res = generate(mnist_model, x, y, "pgd", eps=0.3, backend="native", target=target, progress=False)
    assert res.success_rate > 0.5 and (res.pred_adv[res.success] == target[res.success]).all()


def test_bad_attack_inputs(idc_model, idc_splits):
    x, y = idc_splits[2].x[:4], idc_splits[2].y[:4]
    with pytest.raises(InputError, match="valid attacks are: .*fgsm"):
        generate(idc_model, x, y, "fgsn", eps=0.1)
    with pytest.raises(InputError, match="out of range"):
        generate(idc_model, x, y, "fgsm", eps=8)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        generate(idc_model, x * 255, y, "fgsm", eps=0.1)
    import tensorflow as tf
    soft = tf.keras.Sequential([tf.keras.Input((50, 50, 3)), tf.keras.layers.Flatten(),
                                tf.keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ModelError, match="probabilities"):
        generate(soft, x, y, "fgsm", eps=0.1)
    assert {"fgsm", "bim", "pgd"} <= set(attack_names())
