"""Detector-aware attacks: an attacker who knows the detector is detected less than one who ignores it."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from advkeras.adaptive import adaptive_row, attach_adaptive, attack_detector, calibrated_target, differentiable_from
from advkeras.attacks import generate
from advkeras.detectors import EncoderDisagreementDetector, FeatureSqueezing
from advkeras.errors import InputError
from advkeras.evaluation.detection import detection_metrics, detector_row

EPS = 0.15


@pytest.fixture(scope="module")
def digits(correct_digits):
    return correct_digits(400, 96)


@pytest.fixture(scope="module")
def calibration(mnist_splits):
    return mnist_splits[1].x[:300]


def _plain(model, score, x, y, calib):
    """Detection at 5 % FPR of PGD adversarials that ignore the detector."""
    res = generate(model, x, y, "pgd", eps=EPS, backend="native", steps=20, seed=0, progress=False)
    return detection_metrics(score(x), score(res.clipped[res.fooled]), calibration_scores=score(calib))


def _recheck(res, model, score, threshold, eps):
    """The result's claims, recomputed from its images alone: inside the eps ball and [0, 1], the images said to
    evade are misclassified by the model and at or under the threshold of the real detector."""
    assert np.abs(res.x_adv - res.x).max() <= eps + 1e-6 and res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    wrong = np.argmax(model(res.x_adv).numpy(), 1) != np.argmax(model(res.x).numpy(), 1)
    np.testing.assert_array_equal(wrong, res.fooled)
    under = score(res.x_adv) <= threshold
    np.testing.assert_array_equal(res.evaded, wrong & under)
    assert res.evaded.sum() > 0


def test_gradient_attack_through_encoder_disagreement(mnist_model, mnist_encoder_defense, digits, calibration):
    x, y = digits
    det = EncoderDisagreementDetector(mnist_model, mnist_encoder_defense.model).fit(calibration)
    plain = _plain(mnist_model, det.decision_function, x, y, calibration)
    diff = differentiable_from(det.differentiable_score, calibration, exact=True, what="its own score")
    np.testing.assert_allclose(diff.fn(x[:8]).numpy(), det.decision_function(x[:8]), atol=1e-5)
    target = calibrated_target("encoder disagreement", det.decision_function, det.decision_function(calibration),
                               differentiable=diff)
    res = attack_detector(mnist_model, target, x, y, EPS, lambdas=(0.01, 0.1, 1.0), steps=20, search_iterations=0)
    row = adaptive_row(res, "encoder disagreement", det.decision_function(x), det.decision_function(calibration))
    assert row["adaptive"] and row["n_adv"] >= 20
    assert row["tpr_at_5"] < 0.5 * plain["at_fpr"]["0.05"]["tpr"], (row["tpr_at_5"], plain["at_fpr"]["0.05"])
    _recheck(res, mnist_model, det.decision_function, target.threshold, EPS)
    # detector-aware PGD gets images past the detector that PGD ignoring it does not
    plain_pgd, *aware = res.strategies.values()
    assert max(a["evaded"] for a in aware) > plain_pgd["evaded"], res.strategies
    rows = [detector_row("encoder disagreement", f"pgd@{EPS}", plain, eps=EPS), row]
    attach_adaptive(rows, row)
    assert rows[0]["adaptive_tpr_at_5"] == row["tpr_at_5"]


def test_score_based_search_needs_no_gradient(mnist_model, digits, calibration):
    x, y = digits[0][:48], digits[1][:48]
    fs = FeatureSqueezing(mnist_model).fit(calibration)
    plain = _plain(mnist_model, fs.decision_function, x, y, calibration)
    target = calibrated_target("feature squeezing", fs.decision_function, fs.decision_function(calibration))
    res = attack_detector(mnist_model, target, x, y, EPS, search_iterations=150)
    row = adaptive_row(res, "feature squeezing", fs.decision_function(x), fs.decision_function(calibration))
    assert [k.split(" (")[0] for k in res.strategies] == ["PGD ignoring the detector", "joint Square search"]
    _recheck(res, mnist_model, fs.decision_function, target.threshold, EPS)
    plain_pgd, search = res.strategies.values()
    assert search["evaded"] > plain_pgd["evaded"], res.strategies
    # PGD that ignores the squeezers is all caught; the search, scored by the real squeezers, slips some past
    assert plain["at_fpr"]["0.05"]["tpr"] > 0.9
    assert row["evasion_success"] >= 0.1 and row["evasion_k"] >= 5
    assert row["tpr_at_5"] < plain["at_fpr"]["0.05"]["tpr"] - 0.1, (row["tpr_at_5"], plain["at_fpr"]["0.05"])


def test_clear_errors(mnist_model, digits, calibration):
    x, y = digits
    fs = FeatureSqueezing(mnist_model).fit(calibration)
    target = calibrated_target("fs", fs.decision_function, fs.decision_function(calibration))
    with pytest.raises(InputError, match="no differentiable score and search_iterations=0"):
        attack_detector(mnist_model, target, x, y, EPS, search_iterations=0)
    with pytest.raises(InputError, match="must be a DetectorTarget"):
        attack_detector(mnist_model, fs, x, y, EPS)


def test_peer_detectors_have_differentiable_scores_equal_to_their_own(mnist_model, mnist_splits, digits, calibration):
    from advkeras.detectors import MahalanobisDetector

    x, _ = digits
    train = mnist_splits[0]
    adv = generate(mnist_model, x[:40], digits[1][:40], "fgsm", eps=EPS, backend="native", progress=False).clipped
    maha = MahalanobisDetector(mnist_model).fit(calibration[:100], np.argmax(mnist_model(calibration[:100]), 1), adv,
                                                X_stats=train.x[:500], y_stats=train.y[:500])
    fs = FeatureSqueezing(mnist_model).fit(calibration)
    for det in (maha, fs):
        own = det.decision_function(x[:16])
        np.testing.assert_allclose(det.differentiable_score(tf.constant(x[:16])).numpy(), own,
                                   rtol=1e-3, atol=1e-3 * (1 + np.abs(own).max()))


def test_target_for_builds_targets_from_detectors_or_says_why_not(mnist_model, mnist_encoder_defense, calibration):
    from advkeras.adaptive import target_for
    from advkeras.detectors import RelevantNeuronDetector

    det = EncoderDisagreementDetector(mnist_model, mnist_encoder_defense.model).fit(calibration)
    target = target_for(det, calibration, name="enc")
    assert target.differentiable is not None and target.differentiable.exact
    assert target.threshold == pytest.approx(target.differentiable.threshold, abs=1e-5)
    fs = target_for(FeatureSqueezing(mnist_model).fit(calibration), calibration)
    assert fs.name == "FeatureSqueezing" and fs.differentiable is not None
    with pytest.raises(InputError, match="has no score"):
        target_for(object(), calibration)
    with pytest.raises(InputError, match="scores neuron descriptors"):
        target_for(RelevantNeuronDetector(), calibration)


def test_adaptive_config_refuses_unknown_settings():
    from advkeras.assess.config import load_config

    with pytest.raises(InputError, match="adaptive.attacks"):
        load_config({"adaptive": {"attacks": ["bpda"]}})
    assert load_config({"adaptive": {"restarts": 5}})["adaptive"]["bpda"] is True
