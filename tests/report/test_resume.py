"""Resuming a killed assessment from its checkpoint gives the numbers of a run that was never killed."""
import functools
import json
import logging

import pytest

from advkeras.assess import assess
from advkeras.assess import run as run_module
from advkeras.assess import stages as stages_module
from advkeras.assess.checkpoint import FOLDER, STATE, Checkpoint
from advkeras.errors import InputError

# Wall times differ between any two runs; the rest of metrics.json must not.
TIMING = {"seconds", "stage_seconds", "resumed_stages", "resumed_attacks", "command"}


def _comparable(value):
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in TIMING and not k.endswith("_seconds")
                and not k.startswith("ms_per_")}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _counted(monkeypatch, kill_at: str | None = None) -> dict[str, int]:
    """Count the calls of every stage of `assess`; the stage named `kill_at` is killed (KeyboardInterrupt)."""
    calls = {}

    def wrap(stage):
        name = stage.__name__.removeprefix("stage_")
        calls[name] = 0

        @functools.wraps(stage)
        def counted(ctx):
            calls[name] += 1
            if name == kill_at:
                raise KeyboardInterrupt(f"killed in stage {name}")
            return stage(ctx)

        return counted

    monkeypatch.setattr(run_module, "STAGES", [wrap(s) for s in stages_module.STAGES])
    return calls


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def _md_sections(text: str, first: str) -> str:
    """The Markdown report from section `first` on."""
    return text[text.index(first):]


def _without_prediction_similarity(metrics: dict) -> dict:
    """`metrics` less what the prediction-similarity stage (and its setting) put there."""
    out = {k: v for k, v in metrics.items() if k not in ("prediction_similarity", "ps_summary")}
    out["config"] = {k: v for k, v in metrics["config"].items() if k != "prediction_similarity"}
    out["figures"] = {k: v for k, v in metrics["figures"].items() if not k.startswith("prediction_similarity/")}
    return out


def test_a_run_killed_after_the_defenses_resumes_to_the_numbers_of_an_unbroken_run(tiny_run, tiny_assess_config,
                                                                                  tmp_path, monkeypatch):
    # tiny_run's stages but the prediction-similarity simulation (88 s of the 146 s here), which reads only the model
    cfg = {**tiny_assess_config, "prediction_similarity": {**tiny_assess_config["prediction_similarity"],
                                                           "enabled": False}}
    out = tmp_path / "killed"
    calls = _counted(monkeypatch, kill_at="prediction_similarity")
    with pytest.raises(KeyboardInterrupt):
        assess(out, config=cfg, seed=0)
    assert not (out / "metrics.json").exists()
    state = json.loads((out / FOLDER / STATE).read_text())
    assert state["completed"] == ["data", "model", "attacks", "defenses"]

    calls = _counted(monkeypatch)
    ctx = assess(out, config=cfg, seed=0, resume=True)
    # the finished stages are not run again, except the data splits (rebuilt from the index, cheap)
    assert calls == {"data": 1, "model": 0, "attacks": 0, "defenses": 0, "prediction_similarity": 1,
                     "feature_response": 1, "relevant_neurons": 1, "activation_graphs": 1}
    resumed = _metrics(out)
    assert resumed["resumed_stages"] == ["model", "attacks", "defenses"] and resumed["resumed_attacks"] == []
    assert set(resumed["stage_seconds"]) == set(calls)
    # restored from the checkpoint: the trained model, both attacks' adversarials, both defended models
    assert set(ctx.adversarials) == {"fgsm@0.01", "fgsm@0.2"} and set(ctx.defended) == {"middle-ae", "encoder"}
    for key in ("relevant_neurons", "feature_response", "activation_graphs"):
        assert resumed[key], key  # the stages after the kill, which read the restored state, did produce numbers
    unbroken = _metrics(tiny_run.out)
    assert unbroken["resumed_stages"] == []
    assert _comparable(_without_prediction_similarity(resumed)) == \
        _comparable(_without_prediction_similarity(unbroken))
    report = (out / "report.md").read_text().split("\n\n", 3)
    assert report[2].startswith("Resumed from a checkpoint: stages model, attacks, defenses and attacks none")
    assert _md_sections(report[3], "## Model") == _md_sections((tiny_run.out / "report.md").read_text(), "## Model")


def _attacks_only(cfg: dict) -> dict:
    for stage in ("defenses", "feature_response", "prediction_similarity", "relevant_neurons", "activation_graphs"):
        cfg[stage] = {**cfg[stage], "enabled": False}
    return cfg


def test_a_kill_inside_the_attacks_stage_keeps_the_finished_attacks_and_ignores_half_written_files(
        tiny_run, tiny_assess_config, tmp_path, monkeypatch):
    cfg = _attacks_only(tiny_assess_config)
    out = tmp_path / "killed"
    real_generate, made = stages_module.generate, []

    def generate_then_die(model, x, y, attack, eps=None, **kwargs):
        if attack == "fgsm":  # the configured attacks (the sanity check makes a PGD of its own)
            if made:
                raise KeyboardInterrupt("killed during the second attack")
            made.append(eps)
        return real_generate(model, x, y, attack, eps=eps, **kwargs)

    monkeypatch.setattr(stages_module, "generate", generate_then_die)
    with pytest.raises(KeyboardInterrupt):
        assess(out, config=cfg, seed=0)
    assert made == [0.01]
    folder = out / FOLDER
    saved = list((folder / "attacks").glob("*.npz"))
    assert [p.name.split("-")[0] for p in saved] == ["fgsm@0.01"]
    # what a kill in the middle of a write leaves: temporary files, never read
    second = Checkpoint(out, {}).attack_path("fgsm@0.2")
    second.with_name(f".{second.stem}.999.tmp.npz").write_bytes(b"half an npz")
    (folder / f".{STATE}.999.tmp").write_text('{"completed": ["data", "model", "attacks", "defe')

    def generate_and_count(model, x, y, attack, eps=None, **kwargs):
        if attack == "fgsm":
            made.append(eps)
        return real_generate(model, x, y, attack, eps=eps, **kwargs)

    monkeypatch.setattr(stages_module, "generate", generate_and_count)
    assess(out, config=cfg, seed=0, resume=True)
    assert made == [0.01, 0.2]  # only the unfinished attack is made again
    resumed = _metrics(out)
    assert resumed["resumed_attacks"] == ["fgsm@0.01"] and resumed["resumed_stages"] == ["model"]
    unbroken = _metrics(tiny_run.out)
    assert _comparable(resumed["attacks"]) == _comparable(unbroken["attacks"])
    assert _comparable(resumed["model"]["sanity_checks"]) == _comparable(unbroken["model"]["sanity_checks"])
    assert resumed["model"]["test"] == unbroken["model"]["test"]


def stage_marker(ctx) -> None:
    """A stand-in for the costly stages: something past the data stage, so a checkpoint is written."""
    ctx.metrics["marker"] = len(ctx.train)


def _data_only(monkeypatch) -> None:
    """Only the data stage and a marker stage (the others cost training), and no report (it needs the model's
    numbers)."""
    monkeypatch.setattr(run_module, "STAGES", [run_module.STAGES[0], stage_marker])
    monkeypatch.setattr(run_module, "write_report_md", lambda ctx: None)
    monkeypatch.setattr(run_module, "render_report", lambda *args: None)


def test_a_checkpoint_of_another_seed_or_config_is_refused_and_kept(tiny_assess_config, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from advkeras.cli import main

    _data_only(monkeypatch)  # a checkpoint costs no training here
    out = tmp_path / "run"
    assess(out, config=tiny_assess_config, seed=0)
    before = (out / FOLDER / STATE).read_text()
    with pytest.raises(InputError, match=r"another run.*seed \(0 there, 1 now\).*--force without --resume"):
        assess(out, config=tiny_assess_config, seed=1, resume=True)
    other = {**tiny_assess_config, "max_eval": 32}
    with pytest.raises(InputError, match=r"config\.max_eval \(64 there, 32 now\)"):
        assess(out, config=other, seed=0, resume=True)
    cfg_file = tmp_path / "c.json"  # YAML reads JSON
    cfg_file.write_text(json.dumps(tiny_assess_config))
    result = CliRunner().invoke(main, ["assess", "--config", str(cfg_file), "--out", str(out), "--seed", "2",
                                       "--resume"])
    assert result.exit_code != 0 and "another run" in result.output and "Traceback" not in result.output
    assert (out / FOLDER / STATE).read_text() == before  # refusing deletes nothing


def test_resume_without_a_checkpoint_starts_and_says_so(tiny_assess_config, tmp_path, monkeypatch, caplog):
    calls = _counted(monkeypatch)
    _data_only(monkeypatch)
    with caplog.at_level(logging.INFO, logger="advkeras.assess.run"):
        ctx = assess(tmp_path / "new", config=tiny_assess_config, seed=0, resume=True)
    assert "no checkpoint" in caplog.text and calls["data"] == 1
    assert ctx.metrics["resumed_stages"] == [] and (tmp_path / "new" / "metrics.json").exists()
    with pytest.raises(FileExistsError, match="--force"):  # without --resume a used folder is still refused
        assess(tmp_path / "new", config=tiny_assess_config, seed=0)
