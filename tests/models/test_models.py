import numpy as np
import pytest
import tensorflow as tf

from advkeras.errors import InputError, ModelError
from advkeras.models import (activation_model, build_classifier, check_images, check_logits, compose,
                             evaluate_classifier, get_parts, load_model, save_model)


@pytest.mark.parametrize("backbone,shape,classes", [("vgg_mini", (50, 50, 3), 2), ("lenet", (28, 28, 1), 10),
                                                    ("vgg16", (50, 50, 3), 2),
                                                    ("densenet_mini", (32, 32, 3), 10)])
def test_classifier_has_cnn_dnn_and_outputs_logits(backbone, shape, classes):
    model = build_classifier(backbone, shape, classes, seed=0)
    cnn, dnn = get_parts(model)
    assert cnn.name == "cnn" and dnn.name == "dnn"
    x = np.random.default_rng(0).uniform(size=(3, *shape)).astype("float32")
    out = model(x).numpy()
    assert out.shape == (3, classes)
    assert not np.allclose(out.sum(1), 1.0)  # logits, not probabilities
    assert np.allclose(dnn(cnn(x)).numpy(), out, atol=1e-5)
    check_logits(model)


def test_keras_round_trip_gives_identical_outputs(tmp_path):
    model = build_classifier("vgg16", (50, 50, 3), 2, seed=1)
    path = save_model(model, tmp_path / "m.keras")
    again = load_model(path)
    x = np.random.default_rng(1).uniform(size=(4, 50, 50, 3)).astype("float32")
    np.testing.assert_array_equal(model(x).numpy(), again(x).numpy())
    get_parts(again)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_model(model, path)


def test_model_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown backbone 'resnet'"):
        build_classifier("resnet", (50, 50, 3), 2)
    with pytest.raises(ModelError, match="Keras cache"):
        build_classifier("vgg16", (50, 50, 3), 2, weights="imagenet")
    plain = tf.keras.Sequential([tf.keras.Input((4, 4, 1)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(2)])
    with pytest.raises(ModelError, match="no 'cnn' sub-model"):
        get_parts(plain)
    soft = tf.keras.Sequential([tf.keras.Input((4, 4, 1)), tf.keras.layers.Flatten(),
                                tf.keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ModelError, match="outputs probabilities"):
        check_logits(soft)
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "none.keras")
    (tmp_path / "bad.keras").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="could not be loaded"):
        load_model(tmp_path / "bad.keras")


def test_check_images_rejects_bad_arrays():
    model = build_classifier("lenet", (28, 28, 1), 10)
    good = np.zeros((2, 28, 28, 1), np.float32)
    assert check_images(good, model).dtype == np.float32
    for bad, msg in [(good + 2, r"\[0, 1\]"), (good[0], "batch"), (good.astype(np.uint8), "integer"),
                     (np.full_like(good, np.nan), "NaN"), (np.zeros((2, 32, 32, 1), np.float32), "expects")]:
        with pytest.raises(InputError, match=msg):
            check_images(bad, model)


def test_activation_model_and_compose():
    model = build_classifier("vgg_mini", (50, 50, 3), 2, seed=0)
    x = np.random.default_rng(0).uniform(size=(2, 50, 50, 3)).astype("float32")
    acts = activation_model(model, ["cnn/block1_conv1", "dnn/dense_1", "dnn"])(x)
    assert acts[0].shape == (2, 50, 50, 32) and acts[1].shape == (2, 128)
    np.testing.assert_allclose(acts[2].numpy(), model(x).numpy(), atol=1e-5)
    with pytest.raises(ModelError, match="no layer"):
        activation_model(model, ["dnn/nope"])
    cnn, dnn = get_parts(model)
    identity = tf.keras.layers.Activation("linear", name="middle")
    composed = compose(cnn, dnn, between=[identity])
    np.testing.assert_allclose(composed(x).numpy(), model(x).numpy(), atol=1e-5)


def test_short_training_beats_chance_on_held_out_patients(idc_model, idc_splits):
    test = idc_splits[2]
    metrics = evaluate_classifier(idc_model, test)
    majority = np.bincount(test.y).max() / len(test)
    assert metrics["accuracy"] > max(0.7, majority + 0.05)
    assert np.array(metrics["confusion_matrix"]).sum() == len(test)


def test_densenet_mini_is_a_seeded_densenet():
    from advkeras.detectors.relevant_neurons import neuron_layers

    a, b = (build_classifier("densenet_mini", (32, 32, 3), 10, seed=3) for _ in range(2))
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())  # weights from the seed alone
    cnn, dnn = get_parts(a)
    # dense connectivity: each block layer sees the concatenation of everything before it in the block
    assert cnn.get_layer("block1_concat4").output_shape[-1] == 24 + 4 * 12
    assert [layer.name for layer in dnn.layers[1:]] == ["logits"]  # global pooling -> logits, as DenseNet
    layers = neuron_layers(a)
    assert len(layers) == 15 and layers[0] == "cnn/stem_conv"
