"""Every detector follows scikit-learn's estimator conventions: `clone` gives an unfitted copy with the
same parameters (Keras models and fitted `sets` kept by reference), a pickle or joblib round trip of a
fitted detector predicts the same, and a detector used before `fit` raises `NotFittedError` (which is
still an advkeras `InputError`)."""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any, Callable

import joblib
import numpy as np
import pytest
import sklearn.utils.estimator_checks as sk_checks
import tensorflow as tf
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from advkeras.attacks import generate
from advkeras.detectors import (EncoderDisagreementDetector, FeatureResponseDetector, FeatureSqueezing,
                                MahalanobisDetector, NeuronDescriptors, NotFittedDetectorError,
                                RelevantNeuronDetector, RelevantNeuronSets)
from advkeras.errors import InputError, ModelError

NAMES = ("FeatureResponseDetector", "EncoderDisagreementDetector", "RelevantNeuronDetector", "NeuronDescriptors",
         "FeatureSqueezing", "MahalanobisDetector")

# sklearn's API checks that need no data of a particular form. The other common checks fit on sklearn's
# generic random matrices, which none of these detectors can take: five read N x H x W x C images in [0, 1]
# through a Keras model, and RelevantNeuronDetector reads neuron descriptors whose last column is the model's
# predicted class id (a random float there is refused) with y marking clean (0) / adversarial (1) rows. What
# those data checks ask for (fit returns self, parameters untouched by fit, exact clones, pickling) is
# tested below on real images and descriptors instead.
API_CHECKS = ("check_estimator_cloneable", "check_estimator_repr", "check_no_attributes_set_in_init",
              "check_estimators_unfitted", "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order",
              "check_parameters_default_constructible", "check_get_params_invariance", "check_set_params",
              "check_estimator_tags_renamed", "check_valid_tag_types")


@dataclass
class Case:
    """How to build (unfitted, with non-default parameters), fit and query one detector."""

    make: Callable[[], Any]
    fit_args: tuple
    outputs: Callable[[Any], list[np.ndarray]]   # what a round trip must reproduce
    unfitted_calls: dict[str, tuple]             # method -> arguments, each needing fit
    shared: tuple[str, ...]                      # parameters clone must keep by reference


@pytest.fixture(scope="module")
def data(mnist_model, correct_digits):
    """24 digits the model gets right and their FGSM adversarials: fitting data for every detector, and 16
    mixed images to compare outputs on."""
    x, y = correct_digits(40, 24)
    adv = generate(mnist_model, x, y, "fgsm", eps=0.2, backend="native", progress=False).clipped
    return x, y, adv, np.r_[x[:8], adv[:8]]


@pytest.fixture(scope="module")
def cases(mnist_model, mnist_encoder_defense, data):
    x, y, adv, mixed = data
    descriptors = NeuronDescriptors(mnist_model, append_prediction=True, batch_size=16).fit()
    D = np.r_[descriptors.transform(x), descriptors.transform(adv)]
    d_y = np.r_[np.zeros(len(x)), np.ones(len(adv))].astype(int)
    sets = RelevantNeuronSets(10, n_classes=10).fit(D[d_y == 0, :-1], D[d_y == 0, -1].astype(int),
                                                    D[d_y == 1, :-1], D[d_y == 1, -1].astype(int))
    both = lambda d, X=mixed: [d.predict(X), d.decision_function(X)]  # noqa: E731
    images = (mixed,)
    return {
        "FeatureResponseDetector": Case(
            lambda: FeatureResponseDetector(mnist_model, window=3, direction="two-sided", batch_size=16),
            (x,), lambda d: both(d) + [d.score_samples(mixed), d.predict(mixed, fpr=0.01)],
            {"predict": images, "decision_function": images, "score_samples": images}, ("model",)),
        "EncoderDisagreementDetector": Case(
            lambda: EncoderDisagreementDetector(mnist_model, mnist_encoder_defense.model, batch_size=16),
            (x, y), lambda d: both(d) + [d.differentiable_score(tf.constant(mixed)).numpy()],
            {"predict": images, "predict_pair": images, "decision_function": images,
             "differentiable_score": (tf.constant(mixed),)}, ("original", "defended")),
        "RelevantNeuronDetector": Case(
            lambda: RelevantNeuronDetector(neuron_set="clean", n_estimators=10, sets=sets, random_state=3),
            (D, d_y), lambda d: both(d, D) + [d.predict_proba(D), d.forest_inputs(D)],
            {"predict": (D,), "predict_proba": (D,), "decision_function": (D,), "forest_inputs": (D,)}, ("sets",)),
        "NeuronDescriptors": Case(
            lambda: NeuronDescriptors(mnist_model, append_prediction=True, batch_size=16),
            (x,), lambda d: [d.transform(mixed), d.tf_descriptors(tf.constant(mixed))[0].numpy(), d.neuron_names_],
            {"transform": images, "tf_descriptors": (tf.constant(mixed),)}, ("model",)),
        "FeatureSqueezing": Case(
            lambda: FeatureSqueezing(mnist_model, bits=2, fpr=0.1, batch_size=16),
            (x,), lambda d: both(d) + [d.differentiable_score(tf.constant(mixed)).numpy()],
            {"predict": images, "decision_function": images, "differentiable_score": (tf.constant(mixed),)},
            ("model",)),
        "MahalanobisDetector": Case(
            lambda: MahalanobisDetector(mnist_model, layers=["cnn", "dnn/dense_2"], batch_size=16),
            (x, y, adv), lambda d: both(d) + [d.differentiable_score(tf.constant(mixed)).numpy()],
            {"predict": images, "decision_function": images, "differentiable_score": (tf.constant(mixed),)},
            ("model",)),
    }


@pytest.fixture(scope="module")
def fitted(cases):
    """name -> (fitted detector, its outputs), fitted once per module."""
    out = {}
    for name, case in cases.items():
        det = case.make().fit(*case.fit_args)
        out[name] = det, case.outputs(det)
    return out


def assert_same_outputs(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for g, w in zip(got, want, strict=True):
        if np.asarray(w).dtype.kind in "iubUO":  # predictions, names: exactly
            np.testing.assert_array_equal(g, w)
        else:  # scores: the same weights and ops, so equal up to float rounding
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


def test_cases_cover_every_detector(cases):
    assert set(cases) == set(NAMES)


@pytest.mark.parametrize("check", API_CHECKS)
@pytest.mark.parametrize("name", NAMES)
def test_sklearn_api_checks(cases, name, check):
    getattr(sk_checks, check)(name, cases[name].make())


@pytest.mark.parametrize("name", NAMES)
def test_clone_is_an_unfitted_copy_with_the_same_params_that_refits_the_same(cases, fitted, name):
    case, (det, outputs) = cases[name], fitted[name]
    params = det.get_params(deep=False)
    copy = clone(det)
    assert type(copy) is type(det) and copy is not det
    for key, value in copy.get_params(deep=False).items():
        if key in case.shared:  # Keras models and fitted sets: the same objects, not copies
            assert value is params[key], key
        else:
            assert value == params[key], key
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    assert copy.fit(*case.fit_args) is copy
    assert all(v is params[k] or v == params[k] for k, v in copy.get_params(deep=False).items())  # fit left them
    assert_same_outputs(case.outputs(copy), outputs)  # integer random_state: an exact clone


@pytest.mark.parametrize("name", NAMES)
def test_pickle_and_joblib_round_trips_predict_the_same(cases, fitted, name, tmp_path):
    case, (det, outputs) = cases[name], fitted[name]
    joblib.dump(det, tmp_path / "det.joblib")
    for again in (pickle.loads(pickle.dumps(det)), joblib.load(tmp_path / "det.joblib")):
        assert type(again) is type(det)
        for key in case.shared:  # models travel with the detector (Keras models pickle as .keras bytes)
            assert getattr(again, key) is not None
        assert_same_outputs(case.outputs(again), outputs)
    assert_same_outputs(case.outputs(det), outputs)  # pickling left the original whole


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_use_raises_not_fitted_error(cases, name):
    det = cases[name].make()
    for method, args in cases[name].unfitted_calls.items():
        with pytest.raises(NotFittedError, match=f"this {name} is not fitted yet; .*fit") as err:
            getattr(det, method)(*args)
        assert isinstance(err.value, NotFittedDetectorError) and isinstance(err.value, InputError), method


def test_mahalanobis_fit_without_labels_uses_the_models_predictions(mnist_model, data):
    x, _, adv, mixed = data
    predicted = np.argmax(mnist_model(x), 1)
    a = MahalanobisDetector(mnist_model, layers=["dnn/dense_2"]).fit(x, None, adv)
    b = MahalanobisDetector(mnist_model, layers=["dnn/dense_2"]).fit(x, predicted, adv)
    np.testing.assert_allclose(a.decision_function(mixed), b.decision_function(mixed))
    with pytest.raises(InputError, match="y_stats"):
        MahalanobisDetector(mnist_model).fit(x, predicted, X_stats=x)


def test_relevant_neuron_detector_refuses_unfitted_sets(cases):
    X, y = cases["RelevantNeuronDetector"].fit_args
    with pytest.raises(NotFittedError, match="RelevantNeuronSets is not fitted yet; fit the RelevantNeuronSets"):
        RelevantNeuronDetector(sets=RelevantNeuronSets(10)).fit(X, y)


def test_a_pickle_without_its_model_says_how_to_restore_it(fitted, data):
    det = pickle.loads(pickle.dumps(fitted["NeuronDescriptors"][0]))
    model, det.model = det.model, None  # what advkeras pickles held before models travelled with them
    with pytest.raises(ModelError, match="set its `model` attribute"):
        det.transform(data[3])
    det.model = model
    assert det.transform(data[3]).shape[0] == len(data[3])
