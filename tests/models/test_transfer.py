"""Frozen generic features: a cnn learnt on one data set, moved to another image size, frozen under a new head."""
import numpy as np
import pytest

from advkeras.data import Dataset
from advkeras.defenses.adversarial_training import adversarial_retraining
from advkeras.errors import ModelError
from advkeras.models import (build_classifier, frozen_feature_classifier, get_parts, load_model, resize_cnn,
                             save_model, train_classifier)


def _toy(n: int, size: int, seed: int) -> Dataset:
    """Two classes told apart by brightness: a head on almost any features can learn it."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.uniform(0, 0.5, size=(n, size, size, 3)).astype("float32") + 0.4 * y[:, None, None, None]
    return Dataset(x.astype("float32"), y)


def test_resize_cnn_keeps_conv_weights_and_changes_only_the_feature_count():
    source = get_parts(build_classifier("vgg_mini", (32, 32, 3), 10, seed=0))[0]
    moved = resize_cnn(source, (50, 50, 3))
    assert source.output_shape[-1] == 2 * 2 * 128 and moved.output_shape[-1] == 3 * 3 * 128
    for a, b in zip(source.get_weights(), moved.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Moved back to 32x32 it computes exactly the source's features.
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(resize_cnn(moved, (32, 32, 3))(x).numpy(), source(x).numpy(), atol=1e-6)
    with pytest.raises(ModelError, match="3-channel"):
        resize_cnn(source, (50, 50, 1))


def test_frozen_features_stay_frozen_through_training_retraining_and_saving(tmp_path):
    source = get_parts(build_classifier("vgg_mini", (32, 32, 3), 10, seed=0))[0]
    model = frozen_feature_classifier(source, (50, 50, 3), 2, seed=0)
    cnn_before = [w.copy() for w in get_parts(model)[0].get_weights()]
    dnn_before = [w.copy() for w in get_parts(model)[1].get_weights()]
    data = _toy(64, 50, 0)
    train_classifier(model, data, epochs=2, seed=0)
    for a, b in zip(cnn_before, get_parts(model)[0].get_weights()):
        np.testing.assert_array_equal(a, b)  # the features did not move
    assert any(not np.array_equal(a, b) for a, b in zip(dnn_before, get_parts(model)[1].get_weights()))
    again = load_model(save_model(model, tmp_path / "frozen.keras"))
    assert not get_parts(again)[0].trainable_weights and get_parts(again)[1].trainable_weights
    # Adversarial retraining (fine-tuning and from scratch) trains the head only, as with the paper's fixed VGG16.
    for from_scratch in (False, True):
        res = adversarial_retraining(again, data, attacks=("fgsm",), eps=4 / 255, epochs=1, from_scratch=from_scratch)
        cnn = get_parts(res.model)[0]
        assert not cnn.trainable_weights
        for a, b in zip(cnn_before, cnn.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_imagenet_weights_load_from_the_keras_cache_and_freeze_as_the_paper_did(tmp_path, monkeypatch):
    """Users who have the VGG16 ImageNet file cached get its weights (a stand-in file with known weights here:
    nothing can be downloaded) and can freeze them under a new head, the paper's setting."""
    import tensorflow as tf

    from advkeras.models.zoo import _VGG16_NOTOP

    stand_in = tf.keras.applications.VGG16(include_top=False, weights=None, input_shape=(50, 50, 3))
    (tmp_path / "models").mkdir()
    stand_in.save_weights(tmp_path / "models" / _VGG16_NOTOP)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    model = build_classifier("vgg16", (50, 50, 3), 2, weights="imagenet", seed=0)
    cnn = get_parts(model)[0]
    vgg = next(layer for layer in cnn.layers if isinstance(layer, tf.keras.Model))
    for a, b in zip(stand_in.get_weights(), vgg.get_weights()):
        np.testing.assert_array_equal(a, b)
    frozen = frozen_feature_classifier(cnn, (50, 50, 3), 2, backbone="vgg16", seed=0)
    assert not get_parts(frozen)[0].trainable_weights
    np.testing.assert_allclose(get_parts(frozen)[0](np.ones((1, 50, 50, 3), "float32")).numpy(),
                               cnn(np.ones((1, 50, 50, 3), "float32")).numpy(), atol=1e-5)
