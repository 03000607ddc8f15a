"""Shared fixtures: real embedded data and small models trained once per test session."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from advkeras.data import load_sample, split_by_group, split_random  # noqa: E402


@pytest.fixture(scope="session")
def idc_splits():
    """The embedded IDC sample split by patient (seed 0): train, val, test."""
    return split_by_group(load_sample("idc"), seed=0)


@pytest.fixture(scope="session")
def mnist_splits():
    """The embedded MNIST test set split at random (seed 0)."""
    return split_random(load_sample("mnist"), seed=0)


@pytest.fixture(scope="session")
def idc_model(idc_splits):
    """A vgg_mini classifier trained briefly on the IDC sample (about half a minute on 2 cores)."""
    from advkeras.models import build_classifier, train_classifier

    train, val, _ = idc_splits
    model = build_classifier("vgg_mini", train.input_shape, 2, seed=0)
    train_classifier(model, train, val, epochs=6, patience=6, augment=True, seed=0)
    return model


@pytest.fixture(scope="session")
def mnist_model(mnist_splits):
    """A LeNet trained for two epochs on 3,000 MNIST digits (a few seconds)."""
    from advkeras.models import build_classifier, train_classifier

    train, val, _ = mnist_splits
    model = build_classifier("lenet", (28, 28, 1), 10, seed=0)
    train_classifier(model, train.subset(np.arange(3000)), val.subset(np.arange(500)), epochs=2, seed=0)
    return model


@pytest.fixture(scope="session")
def correct_digits(mnist_model, mnist_splits):
    """`correct_digits(look, keep)`: up to `keep` of the first `look` test digits that `mnist_model` classifies
    correctly, so an attack's success means it changed a right answer."""

    def pick(look: int, keep: int):
        test = mnist_splits[2]
        pred = np.argmax(mnist_model(test.x[:look]), 1)
        idx = np.flatnonzero(pred == test.y[:look])[:keep]
        return test.x[idx], test.y[idx]

    return pick


@pytest.fixture(scope="session")
def mnist_middle_ae(mnist_model, mnist_splits):
    """Middle-autoencoder defense of `mnist_model`, trained on 600 digits (a few seconds)."""
    from advkeras.defenses.autoencoders import middle_autoencoder

    train, val, _ = mnist_splits
    return middle_autoencoder(mnist_model, train.subset(np.arange(600)), val.subset(np.arange(150)), epochs=25,
                              seed=0)


@pytest.fixture(scope="session")
def mnist_encoder_defense(mnist_model, mnist_splits, mnist_middle_ae):
    """Encoder defense of `mnist_model` reusing `mnist_middle_ae`'s encoder, with a new head."""
    from advkeras.defenses.autoencoders import encoder_defense

    train, val, _ = mnist_splits
    return encoder_defense(mnist_model, train.subset(np.arange(600)), val.subset(np.arange(150)),
                           middle=mnist_middle_ae, epochs=30, seed=0)


@pytest.fixture(scope="session")
def mnist_innvestigate_worker(mnist_model, tmp_path_factory):
    """One iNNvestigate worker for `mnist_model`, started from a saved .keras file and shared by the
    tests (starting a worker costs seconds); closed at the end of the session."""
    from advkeras.explain.innvestigate_worker import InnvestigateWorker

    path = tmp_path_factory.mktemp("innvestigate") / "lenet.keras"
    mnist_model.save(path)
    with InnvestigateWorker(path, batch_size=4) as worker:
        yield worker
