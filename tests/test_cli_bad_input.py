"""Every subcommand, given bad input, stops with one clear line: exit status != 0 and no traceback."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from advkeras.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A corrupt model, a model for other images (28x28 grey), a corrupt YAML, an empty folder."""
    from advkeras.models import build_classifier, save_model

    d = tmp_path_factory.mktemp("bad")
    (d / "corrupt.keras").write_bytes(b"not a keras file")
    save_model(build_classifier("lenet", (28, 28, 1), 10, seed=0), d / "grey.keras")
    (d / "bad.yaml").write_text("train: [unclosed\n")
    (d / "unknown.yaml").write_text("train: {epoch: 3}\n")
    (d / "empty").mkdir()
    return d


CASES = {
    "attack: corrupt model": ["attack", "--model", "{d}/corrupt.keras", "--data", "mnist"],
    "attack: model for other images": ["attack", "--model", "{d}/grey.keras", "--data", "idc"],
    "attack: unknown attack": ["attack", "--model", "{d}/grey.keras", "--data", "mnist", "--attack", "pgdd"],
    "attack: eps divides by zero": ["attack", "--model", "{d}/grey.keras", "--data", "mnist", "--eps", "8/0"],
    "attack: eps not a number": ["attack", "--model", "{d}/grey.keras", "--data", "mnist", "--eps", "big"],
    "attack: param without value": ["attack", "--model", "{d}/grey.keras", "--data", "mnist", "--param", "steps"],
    "attack: unknown param": ["attack", "--model", "{d}/grey.keras", "--data", "mnist", "--attack", "pgd",
                              "--backend", "native", "--eps", "0.1", "--param", "stepz=3"],
    "attack: unknown foolbox param": ["attack", "--model", "{d}/grey.keras", "--data", "mnist", "--attack", "pgd",
                                      "--backend", "foolbox", "--eps", "0.1", "--param", "stepz=3"],
    "attack: unknown data": ["attack", "--model", "{d}/grey.keras", "--data", "{d}/nowhere"],
    "defend: corrupt model": ["defend", "--defense", "middle-ae", "--model", "{d}/corrupt.keras", "--data", "mnist"],
    "defend: model for other images": ["defend", "--defense", "middle-ae", "--model", "{d}/grey.keras", "--data", "idc"],
    "defend: empty data folder": ["defend", "--defense", "middle-ae", "--data", "{d}/empty"],
    "detect: corrupt model": ["detect", "--detector", "feature-response", "--model", "{d}/corrupt.keras",
                              "--data", "mnist"],
    "detect: unknown attack": ["detect", "--detector", "feature-response", "--model", "{d}/grey.keras",
                               "--data", "mnist", "--attack", "nope"],
    "detect: model for other images": ["detect", "--detector", "relevant-neurons", "--model", "{d}/grey.keras",
                                       "--data", "idc"],
    "export: corrupt model": ["export", "--model", "{d}/corrupt.keras", "--data", "mnist"],
    "export: corrupt encoder": ["export", "--model", "{d}/grey.keras", "--data", "mnist",
                                "--encoder", "{d}/corrupt.keras"],
    "export: unknown data": ["export", "--model", "{d}/grey.keras", "--data", "{d}/nowhere"],
    "train: unknown data": ["train", "--data", "{d}/nowhere"],
    "train: empty data folder": ["train", "--data", "{d}/empty"],
    "visualize: corrupt model": ["visualize", "--model", "{d}/corrupt.keras", "--data", "mnist"],
    "visualize: defended without a name": ["visualize", "--model", "{d}/grey.keras", "--data", "mnist",
                                           "--defended", "{d}/grey.keras"],
    "visualize: defended file missing": ["visualize", "--model", "{d}/grey.keras", "--data", "mnist",
                                         "--defended", "x={d}/missing.keras"],
    "visualize: unknown attack": ["visualize", "--model", "{d}/grey.keras", "--data", "mnist", "--attack", "nope"],
    "assess: corrupt YAML": ["assess", "--config", "{d}/bad.yaml"],
    "assess: unknown setting": ["assess", "--config", "{d}/unknown.yaml"],
    "assess: corrupt model": ["assess", "--model", "{d}/corrupt.keras", "--data", "mnist"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_ends_in_one_clear_line(case, files, tmp_path):
    args = [a.format(d=files) for a in CASES[case]] + ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0, (case, result.output)
    # an uncaught exception would be kept here (CliRunner swallows the traceback); a clean exit is SystemExit
    assert isinstance(result.exception, SystemExit), (case, repr(result.exception))
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and len(errors[0]) > 20 and "Traceback" not in result.output, (case, result.output)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), case  # nothing half-written
