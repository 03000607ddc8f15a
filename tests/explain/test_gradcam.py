"""GradCAM of single neurons and neuron sets (tf-keras-vis) on a cloned, flattened model."""
import numpy as np
import pytest

from advkeras.errors import InputError
from advkeras.explain.gradcam import flat_clone, gradcam_neurons
from advkeras.models import activation_model


def test_flat_clone_computes_the_same_logits(mnist_model, mnist_splits):
    x = mnist_splits[2].x[:8]
    flat, tensors = flat_clone(mnist_model)
    assert not any(hasattr(layer, "layers") for layer in flat.layers)
    assert "cnn/conv2" in tensors and "dnn/logits" in tensors
    np.testing.assert_allclose(flat(x).numpy(), mnist_model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_single_conv_neuron_cam_is_its_own_feature_map(mnist_model, mnist_splits):
    # For a channel's energy ||A_k||^2 the GradCAM weight is mean(2 A_k) >= 0, so the map is A_k,
    # normalised: a check on the whole tf-keras-vis path.
    x = mnist_splits[2].x[:3]
    cams = gradcam_neurons(mnist_model, x, "cnn/conv1:2")
    a = activation_model(mnist_model, ["cnn/conv1"])(x).numpy()[..., 2]
    for cam, act in zip(cams, a):
        if act.max() > 0:
            ref = (act - act.min()) / (act.max() - act.min())
            np.testing.assert_allclose(cam, ref, atol=2e-3)


def test_neuron_set_cam_and_model_untouched(mnist_model, mnist_splits):
    x = mnist_splits[2].x[:4]
    before = [w.copy() for w in mnist_model.get_weights()]
    n_layers = len(mnist_model.layers)
    cams = gradcam_neurons(mnist_model, x, ["dnn/dense_1:3", "dnn/dense_1:7", "dnn/dense_2:1"])
    assert cams.shape == (4, 28, 28)
    assert cams.min() >= 0 and cams.max() <= 1 + 1e-6
    assert np.ptp(cams.reshape(4, -1), axis=1).max() > 0
    assert all(np.array_equal(a, b) for a, b in zip(before, mnist_model.get_weights()))
    assert len(mnist_model.layers) == n_layers


def test_bad_neuron_names(mnist_model, mnist_splits):
    x = mnist_splits[2].x[:1]
    with pytest.raises(InputError, match="part/layer:index"):
        gradcam_neurons(mnist_model, x, "conv1")
    with pytest.raises(InputError, match="no layer"):
        gradcam_neurons(mnist_model, x, "cnn/conv9:1")
    with pytest.raises(InputError, match="has 6 neurons"):
        gradcam_neurons(mnist_model, x, "cnn/conv1:6")
