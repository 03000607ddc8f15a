import pytest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A real (tiny) assessment: LeNet on MNIST for one epoch, attacked with native FGSM."""
    from advkeras.assess import assess, load_config

    cfg = load_config(data="mnist", max_eval=64)
    cfg["train"] = {"epochs": 1, "batch_size": 128, "learning_rate": 0.002}
    cfg["attacks"] = [{"name": "fgsm", "backend": "native", "eps": [0.01, 0.2]}]
    return assess(tmp_path_factory.mktemp("run") / "tiny", config=cfg, seed=0)
