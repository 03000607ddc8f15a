import json

from click.testing import CliRunner

from advkeras.cli import main
from advkeras.models import load_model


def test_defend_middle_ae_writes_model_and_metrics(tmp_path, mnist_model):
    model_path = tmp_path / "lenet.keras"
    mnist_model.save(model_path)
    out = tmp_path / "run"
    args = ["defend", "--defense", "middle-ae", "--data", "mnist", "--model", str(model_path), "--eps", "0.1",
            "--epochs", "3", "--max-eval", "24", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "initial adversarials recovered" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["defenses"]["recovered"]) == ["middle-ae"]
    assert metrics["defenses"]["info"]["middle-ae"]["epochs_run"] <= 3
    assert [l.name for l in load_model(out / "defenses" / "middle-ae.keras").layers[1:]] == ["cnn", "middle_ae",
                                                                                             "dnn"]


def test_defend_refuses_a_missing_model(tmp_path):
    result = CliRunner().invoke(main, ["defend", "--defense", "encoder", "--model", str(tmp_path / "none.keras"),
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "does not exist" in result.output and "Traceback" not in result.output


def test_defend_refuses_an_option_that_would_be_ignored(tmp_path):
    result = CliRunner().invoke(main, ["defend", "--defense", "encoder", "--form", "online-pgd",
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "adversarial-training only" in result.output
    assert not (tmp_path / "o").exists()  # refused before any work
