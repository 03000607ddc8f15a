"""The forest surrogate: differentiable from images, and ranking like the forest it stands in for."""
import numpy as np
import tensorflow as tf
from scipy.stats import spearmanr

from advkeras.adaptive.surrogates import forest_surrogate
from advkeras.attacks import generate
from advkeras.detectors import NeuronDescriptors, RelevantNeuronDetector, RelevantNeuronSets


def test_forest_surrogate_follows_the_forest(mnist_model, correct_digits):
    x, y = correct_digits(600, 240)
    res = generate(mnist_model, x, y, "fgsm", eps=0.15, backend="native", progress=False)
    clean, adv = x, res.clipped[res.fooled]
    nd = NeuronDescriptors(mnist_model, append_prediction=True).fit()
    dc, da = nd.transform(clean), nd.transform(adv)
    D, _ = nd.tf_descriptors(tf.constant(clean[:8]))
    np.testing.assert_allclose(D.numpy(), dc[:8, :-1], rtol=1e-4, atol=1e-6)
    half_c, half_a = len(dc) // 2, len(da) // 2
    X = np.r_[dc[:half_c], da[:half_a]]
    labels = np.r_[np.zeros(half_c), np.ones(half_a)]
    sets = RelevantNeuronSets(10, n_classes=10).fit(X[labels == 0, :-1], X[labels == 0, -1].astype(int),
                                                    X[labels == 1, :-1], X[labels == 1, -1].astype(int))
    det = RelevantNeuronDetector(n_estimators=100, sets=sets, random_state=0).fit(X, labels)
    diff = forest_surrogate(nd, det, X, labels)
    assert not diff.exact and "rank correlation" in diff.what
    held = np.r_[clean[half_c:], adv[half_a:]]
    surrogate = diff.fn(tf.constant(held)).numpy()
    forest = det.decision_function(nd.transform(held))
    assert spearmanr(surrogate, forest).correlation > 0.5  # held-out images: it ranks like the forest
    with tf.GradientTape() as tape:
        xt = tf.constant(adv[:4])
        tape.watch(xt)
        value = tf.reduce_sum(diff.fn(xt))
    assert np.abs(tape.gradient(value, xt).numpy()).sum() > 0  # a gradient the forest itself does not have
