"""Native guided backprop / deconvnet: forward unchanged, weights shared, SavedModel-ready, agrees with iNNvestigate."""
import numpy as np
import pytest
import tensorflow as tf

from advkeras.errors import InputError, ModelError
from advkeras.explain.guided_backprop import guided_backprop, guided_model, response_function


@pytest.fixture(scope="module")
def digits(mnist_splits):
    return mnist_splits[2].x[:8]


@pytest.fixture(scope="module")
def innvestigate_maps(mnist_innvestigate_worker, digits):
    """iNNvestigate's guided backprop and deconvnet of the same digits, from the session's worker."""
    return {m: mnist_innvestigate_worker.analyze(digits, m) for m in ("guided_backprop", "deconvnet")}


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_native_matches_innvestigate(mnist_model, digits, innvestigate_maps, method):
    native = guided_backprop(mnist_model, digits, method=method)
    theirs = innvestigate_maps[method]
    assert native.shape == theirs.shape == digits.shape
    for a, b in zip(native, theirs):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    # iNNvestigate seeds the backward pass with the top logit instead of 1: same maps up to that factor.
    top = mnist_model.predict(digits, verbose=0).max(1)
    assert (top > 0).all()
    np.testing.assert_allclose(theirs, native * top[:, None, None, None], atol=1e-4 * np.abs(theirs).max())


def test_guided_backprop_differs_from_plain_gradient_and_forward_is_unchanged(mnist_model, digits):
    gmodel = guided_model(mnist_model)
    np.testing.assert_allclose(gmodel(digits).numpy(), mnist_model(digits).numpy(), rtol=1e-5, atol=1e-5)
    # The same variables, not copies: the user's model is neither copied nor modified.
    assert {id(v) for v in gmodel.weights} == {id(v) for v in mnist_model.weights}
    deconv = guided_model(mnist_model, "deconvnet")
    np.testing.assert_allclose(deconv(digits).numpy(), mnist_model(digits).numpy(), rtol=1e-5, atol=1e-5)
    assert {id(v) for v in deconv.weights} == {id(v) for v in mnist_model.weights}
    x = tf.constant(digits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        top = tf.reduce_max(mnist_model(x, training=False), axis=1)
    plain = tape.gradient(top, x).numpy()
    guided = guided_backprop(mnist_model, digits)
    assert not np.allclose(plain, guided)
    # Guided backprop keeps only positive evidence through ReLUs, so it is sparser than the gradient.
    assert (np.abs(guided) > 1e-8).mean() <= (np.abs(plain) > 1e-8).mean()


def test_response_function_survives_savedmodel(mnist_model, digits, tmp_path):
    fn = response_function(mnist_model)
    module = tf.Module()
    module.response = fn
    module.model = fn.guided_model
    tf.saved_model.save(module, str(tmp_path / "gb"))
    loaded = tf.saved_model.load(str(tmp_path / "gb"))
    got, logits = loaded.response(tf.constant(digits))
    np.testing.assert_allclose(got.numpy(), guided_backprop(mnist_model, digits), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logits.numpy(), mnist_model(digits).numpy(), rtol=1e-4, atol=1e-5)


def test_bad_inputs_are_refused(mnist_model, digits):
    with pytest.raises(InputError, match="unknown method"):
        guided_backprop(mnist_model, digits, method="lrp")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        guided_backprop(mnist_model, digits * 255)
    probs = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ModelError, match="logits"):
        guided_model(probs)
    inp = tf.keras.Input((4,))
    two = tf.keras.layers.Add()([tf.keras.layers.Dense(3, name="a")(inp), tf.keras.layers.Dense(3, name="b")(inp)])
    with pytest.raises(ModelError, match="chain"):
        guided_model(tf.keras.Model(inp, two))
