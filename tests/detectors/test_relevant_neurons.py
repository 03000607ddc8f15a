"""Relevant-neuron descriptors, neuron sets and the random-forest detector on a real LeNet + FGSM."""
import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from advkeras.attacks import generate
from advkeras.detectors.relevant_neurons import (NeuronDescriptors, RelevantNeuronDetector, RelevantNeuronSets,
                                                 neuron_layers)
from advkeras.errors import DataError, InputError, ModelError
from advkeras.models import activation_model


@pytest.fixture(scope="module")
def fgsm_mnist(mnist_model, mnist_splits):
    """Clean test digits the model gets right and their successful FGSM adversarials, split in two halves."""
    _, _, test = mnist_splits
    x, y = test.x[:240], test.y[:240]
    res = generate(mnist_model, x, y, "fgsm", eps=0.2, progress=False)
    keep = (res.pred_clean == y) & res.success
    xc, xa = x[keep], res.clipped[keep]
    half = len(xc) // 2
    return (xc[:half], xa[:half]), (xc[half:], xa[half:])


@pytest.fixture(scope="module")
def desc(mnist_model, fgsm_mnist):
    nd = NeuronDescriptors(mnist_model, append_prediction=True).fit()
    (fc, fa), (tc, ta) = fgsm_mnist
    return nd, [nd.transform(a) for a in (fc, fa, tc, ta)]


def test_descriptors_are_normalised_squared_norms(mnist_model, mnist_splits, desc):
    nd, _ = desc
    assert nd.layers_ == ["cnn/conv1", "cnn/conv2", "dnn/dense_1", "dnn/dense_2"]  # logits left out
    assert nd.n_neurons_ == 6 + 16 + 120 + 84
    x = mnist_splits[2].x[:5]
    D = nd.transform(x)
    assert D.shape == (5, nd.n_neurons_ + 1)
    np.testing.assert_array_equal(D[:, -1], mnist_model.predict(x, verbose=0).argmax(1))
    conv2 = activation_model(mnist_model, ["cnn/conv2"])(x).numpy()
    energy = (conv2 ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(D[:, 6:22], energy / np.linalg.norm(energy, axis=1, keepdims=True), rtol=1e-5)
    for sl in (slice(0, 6), slice(6, 22), slice(22, 142), slice(142, 226)):
        norms = np.linalg.norm(D[:, sl], axis=1)
        assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))


def test_descriptors_refuse_models_without_parts():
    import tensorflow as tf

    plain = tf.keras.Sequential([tf.keras.Input((4, 4, 1)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(2)])
    with pytest.raises(ModelError, match="cnn"):
        neuron_layers(plain)


def test_neuron_sets_relations(desc):
    nd, (fc, fa, _, _) = desc
    sets = RelevantNeuronSets(10, n_classes=10).fit(fc[:, :-1], fc[:, -1].astype(int), fa[:, :-1],
                                                    fa[:, -1].astype(int))
    clean, adv = sets.mask("clean"), sets.mask("adv")
    assert clean.shape == (10, nd.n_neurons_)
    np.testing.assert_array_equal(sets.mask("shared"), clean & adv)
    np.testing.assert_array_equal(sets.mask("sym_diff"), clean ^ adv)
    assert 0 < clean.sum() < clean.size  # sparse, not empty
    # each selected neuron carries weight; the L1 budget holds per class
    assert np.all(np.abs(sets.W_clean_).sum(0) <= 10 * (1 + 1e-6))
    s = sets.summary(nd.neuron_names_)
    assert s["sets"]["shared"]["per_class"] == sets.mask("shared").sum(1).tolist()
    assert s["sets"]["clean"]["neurons"][0] == nd.neuron_names_[clean[0]].tolist()
    with pytest.raises(InputError, match="unknown neuron set"):
        sets.mask("everything")


@pytest.mark.parametrize("mu", [20.0, 100.0])
def test_neuron_sets_converge_on_real_descriptors(desc, mu):
    # fewer samples than neurons on the adversarial side, nearly exact fits at mu = 100: the cases
    # where the projected-gradient solver used to stop at its iteration cap
    nd, (fc, fa, _, _) = desc
    sets = RelevantNeuronSets(mu, n_classes=10).fit(fc[:, :-1], fc[:, -1].astype(int), fa[:, :-1],
                                                    fa[:, -1].astype(int))
    for side in ("clean", "adv"):
        info = sets.solver_[side]
        assert info["converged"] and len(info["n_iter"]) == len(info["rel_gap"]) == 10
        assert max(info["rel_gap"]) <= sets.tol and max(info["n_iter"]) < sets.max_iter


def test_balanced_test_sets_and_balanced_accuracy(mnist_model, mnist_splits):
    from advkeras.detectors.relevant_neurons.experiment import AttackSpec, attack_part, score_row

    _, _, test = mnist_splits
    part = test.subset(np.arange(60))
    spec = AttackSpec("fgsm", 0.1)  # fools only part of the digits, so the two protocols differ
    plain, paired = attack_part(mnist_model, part, spec), attack_part(mnist_model, part, spec, balanced=True)
    assert len(paired.clean) == len(paired.adv) == len(plain.adv) < len(plain.clean)
    # the clean side of a pair is the adversarial's own original
    np.testing.assert_array_equal(paired.clean, part.x[paired.result.fooled])
    # "always clean" scores the clean share as accuracy but 0.5 as balanced accuracy
    n_c, n_a = len(plain.clean), len(plain.adv)
    row = score_row(np.zeros(n_c), np.zeros(n_a), np.zeros(n_c, bool), np.zeros(n_a, bool), None)
    assert row["accuracy"] == pytest.approx(n_c / (n_c + n_a)) and row["balanced_accuracy"] == 0.5


def test_detector_detects_unseen_fgsm_and_round_trips(desc, tmp_path):
    _, (fc, fa, tc, ta) = desc
    X, y = np.r_[fc, fa], np.r_[np.zeros(len(fc)), np.ones(len(fa))]
    det = RelevantNeuronDetector(10, neuron_set="clean", use_label=True, n_estimators=40).fit(X, y)
    from sklearn.metrics import roc_auc_score

    scores = np.r_[det.decision_function(tc), det.decision_function(ta)]
    truth = np.r_[np.zeros(len(tc)), np.ones(len(ta))]
    assert roc_auc_score(truth, scores) > 0.8
    assert set(np.unique(det.predict(ta))) <= {0, 1}
    np.testing.assert_allclose(det.predict_proba(ta).sum(1), 1.0)
    path = det.save(tmp_path / "rn.joblib")
    again = RelevantNeuronDetector.load(path)
    np.testing.assert_array_equal(again.decision_function(ta), det.decision_function(ta))
    np.testing.assert_array_equal(again.mask_, det.mask_)


def test_with_label_zeroes_other_classes_neurons(desc):
    _, (fc, fa, _, _) = desc
    X, y = np.r_[fc, fa], np.r_[np.zeros(len(fc)), np.ones(len(fa))]
    det = RelevantNeuronDetector(10, neuron_set="clean", use_label=True, n_estimators=5).fit(X, y)
    pred = X[:, -1].astype(int)
    F = det._features(X[:, :-1], pred)
    allowed = det.mask_[pred][:, det.columns_]
    assert np.all(F[~allowed] == 0)
    assert np.any(F[allowed] != 0)
    no_label = RelevantNeuronDetector(10, neuron_set="clean", use_label=False, n_estimators=5, sets=det.sets_)
    np.testing.assert_array_equal(no_label.fit(X, y)._features(X[:, :-1], pred), X[:, det.columns_])


def test_pipeline_from_images(mnist_model, fgsm_mnist):
    (fc, fa), (tc, ta) = fgsm_mnist
    pipe = Pipeline([("descriptors", NeuronDescriptors(mnist_model, append_prediction=True)),
                     ("detector", RelevantNeuronDetector(20, neuron_set="adv", n_estimators=20))])
    pipe.fit(np.r_[fc, fa], np.r_[np.zeros(len(fc)), np.ones(len(fa))])
    assert pipe.predict(ta).mean() > pipe.predict(tc).mean()


def test_detector_errors(desc, tmp_path):
    _, (fc, fa, _, _) = desc
    X, y = np.r_[fc, fa], np.r_[np.zeros(len(fc)), np.ones(len(fa))]
    with pytest.raises(InputError, match="not fitted"):
        RelevantNeuronDetector().predict(X)
    with pytest.raises(InputError, match="neuron_set"):
        RelevantNeuronDetector(neuron_set="best").fit(X, y)
    with pytest.raises(InputError, match="both"):
        RelevantNeuronDetector().fit(X, np.zeros(len(X)))
    det = RelevantNeuronDetector(10, n_estimators=5).fit(X, y)
    with pytest.raises(InputError, match="neurons"):
        det.predict(X[:, 3:])
    bad = tmp_path / "bad.joblib"
    bad.write_bytes(b"not a detector")
    with pytest.raises(DataError, match="not a readable"):
        RelevantNeuronDetector.load(bad)
    with pytest.raises(DataError, match="does not exist"):
        RelevantNeuronDetector.load(tmp_path / "missing.joblib")
