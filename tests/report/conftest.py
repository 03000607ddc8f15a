import copy

import pytest

# Every stage on, each as small as it can be while still producing its numbers and figures.
TINY_STAGES = {
    "defenses": {"names": ["middle-ae", "encoder"], "max_eval": 32, "attacks": ["fgsm"], "new_attack": "fgsm",
                 "eps": 0.1, "eps_grid": [0.02, 0.1, 0.3],
                 "params": {"middle-ae": {"epochs": 2}, "encoder": {"epochs": 2}}},
    "feature_response": {"max_calibration": 60, "figure_images": 1},
    "prediction_similarity": {"benign_users": 4, "queries_per_user": 4, "processes": 1,
                              "attacks": [{"name": "bim", "backend": "native", "eps": 0.2}]},
    "relevant_neurons": {"n_estimators": 20, "max_fit": 60},
    "activation_graphs": {"attacks": ["fgsm"], "n_images": 32, "eps": 0.1},
}


def tiny_config() -> dict:
    """The config of `tiny_run`: LeNet on MNIST for one epoch, attacked with native FGSM, every stage on."""
    from advkeras.assess import load_config

    cfg = load_config(data="mnist", max_eval=64)
    cfg["train"] = {"epochs": 1, "batch_size": 128, "learning_rate": 0.002}
    cfg["attacks"] = [{"name": "fgsm", "backend": "native", "eps": [0.01, 0.2]}]
    cfg.update(copy.deepcopy(TINY_STAGES))
    return cfg


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A real (tiny) assessment: LeNet on MNIST for one epoch, attacked with native FGSM, every stage on."""
    from advkeras.assess import assess

    return assess(tmp_path_factory.mktemp("run") / "tiny", config=tiny_config(), seed=0)


@pytest.fixture
def tiny_assess_config() -> dict:
    """A fresh copy of `tiny_run`'s config, for tests that run (parts of) the same assessment again."""
    return tiny_config()
