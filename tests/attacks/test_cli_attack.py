import json

import numpy as np
from click.testing import CliRunner

from advkeras.cli import main
from advkeras.cli.attack import parse_eps


def test_attack_cli_writes_adversarials_grid_and_summary(tmp_path, mnist_model):
    model_path = tmp_path / "m.keras"
    mnist_model.save(model_path)
    out = tmp_path / "run"
    args = ["attack", "--model", str(model_path), "--data", "mnist", "--attack", "bim", "--eps", "0.2",
            "--backend", "native", "-n", "12", "--param", "steps=5", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    saved = np.load(out / "adversarials.npz")
    assert saved["x"].shape == saved["x_adv"].shape == (12, 28, 28, 1)
    assert np.abs(saved["x_adv"] - saved["x"]).max() <= 0.2 + 1e-6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params"]["steps"] == 5 and summary["success_rate"] == saved["success"].mean()
    assert (out / "grid.png").read_bytes()[:4] == b"\x89PNG"
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "--force" in again.output


def test_attack_cli_bad_input_is_a_clean_message(tmp_path, mnist_model):
    model_path = tmp_path / "m.keras"
    mnist_model.save(model_path)
    base = ["attack", "--model", str(model_path), "--data", "mnist", "-n", "4", "--out", str(tmp_path / "o")]
    for extra, says in ((["--attack", "pgdd", "--eps", "0.1"], "valid attacks are"),
                        (["--attack", "pgd", "--eps", "3"], "out of range"),
                        (["--attack", "pgd", "--eps", "a/b"], "not a number"),
                        (["--attack", "pgd", "--eps", "8/0"], "not a number"),
                        (["--attack", "pgd", "--eps", "0.1", "--param", "steps"], "name=value")):
        result = CliRunner().invoke(main, base + extra + ["--force"])
        assert result.exit_code != 0 and says in result.output and "Traceback" not in result.output
    assert parse_eps("8/255") == 8 / 255 and parse_eps("none") is None
