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


def _tiny_model():
    """image 4x4x1 -> cnn: 1x1 conv with 2 ReLU filters -> flatten -> dnn: 2 logits, fixed weights, so that
    d logit_c / d A^k_ij is the dense weight of (i, j, k): GradCAM can be computed by hand."""
    import tensorflow as tf

    L = tf.keras.layers
    inp = L.Input((4, 4, 1), name="image")
    cnn = tf.keras.Model(inp, L.Flatten(name="features")(L.Conv2D(2, 1, activation="relu", name="conv")(inp)),
                         name="cnn")
    f = L.Input((32,), name="features")
    dnn = tf.keras.Model(f, L.Dense(2, name="logits")(f), name="dnn")
    outer_in = L.Input((4, 4, 1), name="image")
    model = tf.keras.Model(outer_in, dnn(cnn(outer_in)))
    cnn.get_layer("conv").set_weights([np.array([1.0, 0.5]).reshape(1, 1, 1, 2), np.array([0.0, 0.1])])
    rng = np.random.default_rng(0)
    V = rng.normal(size=(4, 4, 2, 2))  # (i, j, filter, class)
    V[:, :, 1, 0] -= 1.0               # class 0 weighs filter 1 negatively on average, filter 0 positively
    V[:, :, 0, 0] += 1.0
    dnn.get_layer("logits").set_weights([V.reshape(32, 2), np.zeros(2)])
    return model, V


def _norm(m):
    return (m - m.min()) / (m.max() - m.min() + 1e-7)


def test_isolated_gradcam_equals_hand_computation_and_differs_from_class_gradcam():
    from advkeras.explain.gradcam import class_gradcam

    model, V = _tiny_model()
    x = np.random.default_rng(1).uniform(size=(3, 4, 4, 1)).astype("float32")
    A = np.stack([np.maximum(x[..., 0] * 1.0, 0), np.maximum(x[..., 0] * 0.5 + 0.1, 0)], -1)  # n, i, j, k
    alpha = V[..., 0].mean(axis=(0, 1))            # class 0: the spatial mean of d logit_0 / d A^k
    assert alpha[0] > 0 > alpha[1]
    for k in (0, 1):
        cam = gradcam_neurons(model, x, f"cnn/conv:{k}", variant="isolated", class_index=0)
        hand = np.stack([_norm(np.maximum(alpha[k] * a[..., k], 0)) for a in A])
        np.testing.assert_allclose(cam, hand, atol=1e-5)
    # filter 1 speaks against class 0: its isolated map is empty, while its energy map is its activation
    assert np.all(gradcam_neurons(model, x, "cnn/conv:1", variant="isolated", class_index=0) == 0)
    assert gradcam_neurons(model, x, "cnn/conv:1").max() > 0.99
    # the class GradCAM weighs both filters: ReLU(alpha_0 A^0 + alpha_1 A^1), a different map
    full = class_gradcam(model, x, "cnn/conv", class_index=0)
    hand_full = np.stack([_norm(np.maximum(a @ alpha, 0)) for a in A])
    np.testing.assert_allclose(full, hand_full, atol=1e-5)
    single = gradcam_neurons(model, x, "cnn/conv:0", variant="isolated", class_index=0)
    assert np.abs(full - single).max() > 0.1
    # a set's map is the sum of its isolated maps; the predicted class is the default
    both = gradcam_neurons(model, x, ["cnn/conv:0", "cnn/conv:1"], variant="isolated", class_index=[0, 0, 0])
    np.testing.assert_allclose(both, single, atol=1e-5)
    pred = model(x).numpy().argmax(1)
    np.testing.assert_allclose(gradcam_neurons(model, x, "cnn/conv:0", variant="isolated"),
                               gradcam_neurons(model, x, "cnn/conv:0", variant="isolated", class_index=pred))


def test_isolated_gradcam_bad_input(mnist_model, mnist_splits):
    x = mnist_splits[2].x[:2]
    with pytest.raises(InputError, match="variant"):
        gradcam_neurons(mnist_model, x, "cnn/conv1:1", variant="paper")
    with pytest.raises(InputError, match="not convolutional"):
        gradcam_neurons(mnist_model, x, "dnn/dense_1:1", variant="isolated")
    with pytest.raises(InputError, match="class_index"):
        gradcam_neurons(mnist_model, x, "cnn/conv1:1", variant="isolated", class_index=10)
    with pytest.raises(InputError, match="isolated"):
        gradcam_neurons(mnist_model, x, "cnn/conv1:1", class_index=3)


def test_flat_clone_and_gradcam_on_a_densenet():
    # branches and concatenations (DenseNet) are rebuilt, not only chains of layers
    from advkeras.models import build_classifier

    model = build_classifier("densenet_mini", (32, 32, 3), 10, seed=0)
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    flat, tensors = flat_clone(model)
    assert "cnn/block2_concat3" in tensors and "cnn/trans1_conv" in tensors
    np.testing.assert_allclose(flat(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
    for variant in ("energy", "isolated"):
        cams = gradcam_neurons(model, x, ["cnn/block2_conv1:3", "cnn/trans1_conv:5"], variant=variant)
        assert cams.shape == (2, 32, 32) and cams.min() >= 0 and cams.max() <= 1 + 1e-6
