import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

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
    adv = generate(original, x[100:], y[100:], "fgsm", eps=0.15, backend="native", progress=False)
    fooled = adv.success & (adv.pred_clean == y[100:])
    assert fooled.sum() >= 10
    flags = det.predict(adv.clipped[fooled])
    a, b = det.predict_pair(adv.clipped[fooled])
    np.testing.assert_array_equal(a, np.argmax(original(adv.clipped[fooled]), 1))  # pair = (original, defended)
    np.testing.assert_array_equal(b, np.argmax(defended(adv.clipped[fooled]), 1))
    metrics = det.evaluate(x[100:], adv.clipped[fooled])
    # measured: 35 % of 43 adversarials flagged, 8 % of 100 clean digits; the clean rate on the fitting half
    # estimates the same rate on the other half
    assert metrics["tpr"] > metrics["fpr"] + 0.15 and flags.mean() == pytest.approx(metrics["tpr"])
    assert abs(det.clean_flag_rate_ - metrics["fpr"]) < 0.1
    scores_clean, scores_adv = det.decision_function(x[100:]), det.decision_function(adv.clipped[fooled])
    p, q = tf.nn.softmax(original(x[100:104])).numpy(), tf.nn.softmax(defended(x[100:104])).numpy()
    np.testing.assert_allclose(scores_clean[:4], 0.5 * np.abs(p - q).sum(1), atol=1e-6)  # total variation
    assert roc_auc_score(np.r_[np.zeros(len(scores_clean)), np.ones(len(scores_adv))],
                         np.r_[scores_clean, scores_adv]) > 0.7  # measured 0.814


def test_fit_refuses_models_that_do_not_match(pair):
    other = build_classifier("lenet", (28, 28, 1), 3, seed=0)
    with pytest.raises(ModelError, match="same images"):
        EncoderDisagreementDetector(pair[0], other).fit(np.zeros((2, 28, 28, 1), np.float32))
