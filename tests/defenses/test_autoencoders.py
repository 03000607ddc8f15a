import numpy as np
import pytest

from advkeras.errors import InputError

from advkeras.defenses.autoencoders import build_conv_autoencoder, encoder_of, initial_autoencoder
from advkeras.defenses.cloning import cnn_features
from advkeras.errors import ModelError
from advkeras.models import get_parts, load_model, predict_logits


@pytest.fixture(scope="module")
def small(mnist_splits):
    train, val, test = mnist_splits
    return train.subset(np.arange(600)), val.subset(np.arange(150)), test.subset(np.arange(200))


@pytest.fixture(scope="module")
def middle(mnist_middle_ae):
    return mnist_middle_ae


def _acc(model, ds):
    return float((predict_logits(model, ds.x).argmax(1) == ds.y).mean())


def test_middle_autoencoder_sits_between_frozen_copies_of_cnn_and_dnn(mnist_model, middle, small, tmp_path):
    model = middle.model
    assert [l.name for l in model.layers[1:]] == ["cnn", "middle_ae", "dnn"]
    assert not model.trainable_weights
    cnn, dnn = get_parts(model)
    ocnn, odnn = get_parts(mnist_model)
    assert cnn is not ocnn and all(np.array_equal(a, b) for a, b in zip(cnn.get_weights(), ocnn.get_weights()))
    assert all(np.array_equal(a, b) for a, b in zip(dnn.get_weights(), odnn.get_weights()))
    assert all(l.trainable for l in mnist_model.layers)  # the user's model is untouched
    # The autoencoder really reconstructs held-out features (better than predicting their mean).
    feats = cnn_features(mnist_model, small[2].x)
    recon = predict_logits(model.get_layer("middle_ae"), feats)
    assert np.mean((recon - feats) ** 2) < 0.5 * np.mean((feats - feats.mean(0)) ** 2)
    assert _acc(model, small[2]) > 0.5
    path = tmp_path / "m.keras"
    model.save(path)
    again = load_model(path)
    np.testing.assert_allclose(predict_logits(again, small[2].x[:16]), predict_logits(model, small[2].x[:16]),
                               atol=1e-4)


def test_encoder_defense_reuses_the_middle_encoder_and_trains_a_new_dnn(mnist_encoder_defense, middle, small,
                                                                        tmp_path):
    res = mnist_encoder_defense
    model = res.model
    assert [l.name for l in model.layers[1:]] == ["cnn", "encoder", "dnn"]
    enc = model.get_layer("encoder")
    np.testing.assert_array_equal(enc.get_weights()[0], encoder_of(middle).get_weights()[0])
    assert model.get_layer("dnn").input_shape[-1] == res.info["code_size"] == 64
    assert model.get_layer("dnn").trainable and not enc.trainable
    assert _acc(model, small[2]) > 0.6
    model.save(tmp_path / "e.keras")
    assert [l.name for l in load_model(tmp_path / "e.keras").layers[1:]] == ["cnn", "encoder", "dnn"]


def test_encoder_of_rejects_a_model_without_a_middle_autoencoder(mnist_model):
    with pytest.raises(ModelError, match="middle_ae"):
        encoder_of(mnist_model)


def test_initial_autoencoder_reconstructs_images_before_the_cnn(mnist_model, small, tmp_path):
    # 5 epochs: at 3 the loss is still falling steeply and the MSE ratio spans 0.2-0.7 over seeds 0-5.
    res = initial_autoencoder(mnist_model, small[0], small[1], epochs=5, seed=0)
    model = res.model
    assert [l.name for l in model.layers[1:]] == ["initial_ae", "cnn", "dnn"]
    recon = predict_logits(model.get_layer("initial_ae"), small[2].x)
    assert recon.shape == small[2].x.shape and recon.min() >= 0 and recon.max() <= 1
    assert np.mean((recon - small[2].x) ** 2) < 0.5 * np.mean((small[2].x - small[2].x.mean()) ** 2)
    model.save(tmp_path / "i.keras")
    np.testing.assert_allclose(predict_logits(load_model(tmp_path / "i.keras"), small[2].x[:8]),
                               predict_logits(model, small[2].x[:8]), atol=1e-4)


def test_classifier_consistency_keeps_the_original_answers(mnist_model, small):
    """The consistency term trains the autoencoder to keep what the frozen classifier reads, so the
    defended model agrees with the original more often than a pixel-loss autoencoder of the same budget."""
    agree = {}
    for c in (0.0, 1.0):
        res = initial_autoencoder(mnist_model, small[0], small[1], epochs=3, consistency=c, seed=0)
        agree[c] = float((predict_logits(res.model, small[2].x).argmax(1)
                          == predict_logits(mnist_model, small[2].x).argmax(1)).mean())
        assert res.info["consistency"] == c and 0 < res.info["train_mse"] < 1
    assert agree[1.0] > agree[0.0], agree
    with pytest.raises(InputError, match="consistency"):
        initial_autoencoder(mnist_model, small[0], consistency=-1)


def test_conv_autoencoder_keeps_odd_image_sizes():
    ae = build_conv_autoencoder((25, 27, 3))
    assert ae.output_shape == (None, 25, 27, 3)


def test_defense_parameters_are_checked_before_any_training(mnist_model, middle, small):
    from advkeras.defenses import build_defense
    from advkeras.defenses.autoencoders import encoder_defense
    from advkeras.defenses.build import check_defense_params, reuses_middle
    from advkeras.errors import InputError

    with pytest.raises(InputError, match="has no parameter 'epoch'.*accepts: .*epochs"):
        build_defense("middle-ae", mnist_model, *small[:2], epoch=3)
    with pytest.raises(InputError, match="unknown defense 'median-ae'"):
        check_defense_params("median-ae", {})
    check_defense_params("encoder", {"epochs": 2, "code_size": 8})  # the encoder passes code_size on
    assert reuses_middle("encoder", {"epochs": 2}) and not reuses_middle("encoder", {"code_size": 8})
    with pytest.raises(InputError, match="code_size configure a new middle autoencoder"):
        encoder_defense(mnist_model, *small[:2], middle=middle, code_size=8)


def test_a_defense_refuses_a_model_whose_extra_layers_it_would_drop(middle, small):
    from advkeras.defenses import build_defense

    with pytest.raises(ModelError, match="would drop its top-level layer\\(s\\) middle_ae"):
        build_defense("initial-ae", middle.model, *small[:2], epochs=1)


def test_mismatched_validation_images_or_middle_autoencoder_get_a_clear_error(mnist_model, middle, small):
    from advkeras.data.dataset import Dataset
    from advkeras.defenses.autoencoders import encoder_defense
    from advkeras.errors import InputError

    rgb = Dataset(np.zeros((4, 28, 28, 3), np.float32), np.zeros(4, np.int64), None, small[1].class_names, "rgb")
    with pytest.raises(InputError, match="validation images"):
        initial_autoencoder(mnist_model, small[0], rgb, epochs=1)
    other = build_dense_autoencoder_model(7)
    with pytest.raises(InputError, match="reads 7 features"):
        encoder_defense(mnist_model, *small[:2], middle=other, epochs=1)


def build_dense_autoencoder_model(n_features):
    from advkeras.defenses.autoencoders import build_dense_autoencoder

    return build_dense_autoencoder(n_features, code_size=2, hidden=(4,))
