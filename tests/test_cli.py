import json

from click.testing import CliRunner

from advkeras.cli import main


def test_help_lists_subcommands_and_each_has_common_options():
    runner = CliRunner()
    out = runner.invoke(main, ["--help"]).output
    for name in main.commands:
        assert name in out
        sub = runner.invoke(main, [name, "--help"])
        assert sub.exit_code == 0
        for opt in ("--seed", "--out", "--help"):
            assert opt in sub.output, (name, opt)


def test_commands_that_train_take_the_determinism_flag():
    runner = CliRunner()
    for name in ("train", "assess", "defend"):
        assert "--deterministic / --no-deterministic" in runner.invoke(main, [name, "--help"]).output, name


def test_bad_input_gives_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "neither an embedded sample" in result.output and "Traceback" not in result.output


def test_assess_writes_metrics_and_refuses_to_overwrite(tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: mnist\ntrain: {epochs: 1, batch_size: 128, learning_rate: 0.002}\nmax_eval: 64\n"
                   "attacks:\n  - {name: fgsm, backend: native, eps: [0.05, 0.2]}\n"
                   + "".join(f"{stage}: {{enabled: false}}\n" for stage in
                             ("defenses", "feature_response", "prediction_similarity", "relevant_neurons",
                              "activation_graphs")))
    runner = CliRunner()
    result = runner.invoke(main, ["assess", "--config", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    # One epoch of LeNet on MNIST: measured held-out accuracy 0.921 (seed 0), 0.905 and 0.897 (seeds 1, 2),
    # balanced accuracy 0.894-0.920; a broken training or split falls far below.
    assert metrics["model"]["test"]["accuracy"] > 0.85 and metrics["model"]["test"]["balanced_accuracy"] > 0.85
    assert metrics["deterministic"] is True  # --deterministic is the default
    rates = [r["success_rate"] for r in metrics["attacks"]]
    assert rates[0] < rates[1]
    assert (out / "report.md").read_text().startswith("# advkeras assessment")
    again = runner.invoke(main, ["assess", "--config", str(cfg), "--out", str(out)])
    assert again.exit_code != 0 and "--force" in again.output
    assert (out / "metrics.json").exists()


def test_force_refuses_to_replace_an_out_folder_that_holds_the_input_model(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    model = out / "model.keras"
    model.write_bytes(b"the user's model")
    result = CliRunner().invoke(main, ["defend", "--defense", "middle-ae", "--model", str(model),
                                       "--out", str(out), "--force"])
    assert result.exit_code != 0 and "lies inside" in result.output and "Traceback" not in result.output
    assert model.read_bytes() == b"the user's model"


def test_impossible_option_values_are_refused_before_any_work():
    runner = CliRunner()
    for args in (["defend", "--defense", "encoder", "--max-eval", "0"], ["defend", "--defense", "encoder", "--eps", "2"],
                 ["train", "--epochs", "0"], ["detect", "--detector", "feature-response", "--mu", "-1"],
                 ["export", "--target-fpr", "1.5", "--model", "m.keras"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and "Invalid value" in result.output, (args, result.output)


def test_tensorflow_start_up_noise_is_quiet_unless_verbose():
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("advkeras")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([str(exe), "attack", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert quiet.returncode == 0 and "Unable to register" not in quiet.stderr and "rebuild TensorFlow" not in quiet.stderr
    loud = subprocess.run([str(exe), "--verbose", "attack", "--help"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert loud.returncode == 0 and "--eps" in loud.stdout
