import numpy as np
import pytest

from advkeras.attacks import generate
from advkeras.detectors.encoder_disagreement import EncoderDisagreementDetector
from advkeras.errors import ModelError
from advkeras.models import build_classifier


@pytest.fixture(scope="module")
def pair(mnist_model, mnist_encoder_defense):
    return mnist_model, mnist_encoder_defense.model


def test_disagreement_flags_adversarials_more_often_than_clean_images(pair, mnist_splits):
    original, defended = pair
    test = mnist_splits[2]
    x, y = test.x[:200], test.y[:200]
    det = EncoderDisagreementDetector(original, defended).fit(x[:100], y[:100])
    assert det.fit(x[:100]) is det and 0 <= det.clean_flag_rate_ <= 1
    adv = generate(original, x[100:], y[100:], "fgsm", eps=0.15, backend="native", progress=False)
    fooled = adv.success & (adv.pred_clean == y[100:])
    assert fooled.sum() >= 10
    flags = det.predict(adv.clipped[fooled])
    a, b = det.predict_pair(adv.clipped[fooled])
    np.testing.assert_array_equal(flags, (a != b).astype(int))
    metrics = det.evaluate(x[100:], adv.clipped[fooled])
    assert metrics["tpr"] == pytest.approx(flags.mean())
    assert metrics["tpr"] > metrics["fpr"]
    scores_clean, scores_adv = det.decision_function(x[100:]), det.decision_function(adv.clipped[fooled])
    assert scores_adv.mean() > scores_clean.mean() and scores_clean.min() >= 0 and scores_adv.max() <= 1


def test_fit_refuses_models_that_do_not_match(pair):
    other = build_classifier("lenet", (28, 28, 1), 3, seed=0)
    with pytest.raises(ModelError, match="same images"):
        EncoderDisagreementDetector(pair[0], other).fit(np.zeros((2, 28, 28, 1), np.float32))
