"""`assess`: run the configured stages on a model and data, write metrics.json and the report."""
from __future__ import annotations

import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import tensorflow as tf
from tqdm.auto import tqdm

from advkeras import __version__
from advkeras.assess.checkpoint import Checkpoint, fingerprint, plain
from advkeras.assess.config import load_config
from advkeras.assess.context import RunContext
from advkeras.assess.report_md import write_report_md
from advkeras.assess.stages import STAGES
from advkeras.report import render_report
from advkeras.errors import InputError, ModelError
from advkeras.models import load_model
from advkeras.runs import prepare_out_dir, write_json
from advkeras.seeding import deterministic_ops

log = logging.getLogger(__name__)


def assess(out: str | Path, *, config: str | Path | dict | None = None, seed: int = 0, force: bool = False,
           confirm: Callable[[str], bool] | None = None, deterministic: bool = True, resume: bool = False,
           **overrides: Any) -> RunContext:
    """Assess a model (or a freshly trained one) on data; returns the run context with all metrics.

    `deterministic` turns on TF's op determinism (process-wide, see `advkeras.seeding.deterministic_ops`)
    so the same seed on the same machine gives the same numbers; False is faster. After each stage the run
    saves a checkpoint in OUT/checkpoint (`advkeras.assess.checkpoint`); `resume=True` continues a killed run
    of the same config and seed from it, without rerunning the stages it finished (a checkpoint of another
    run is refused; no checkpoint: the run starts, as without `resume`)."""
    deterministic = deterministic_ops(deterministic)
    cfg = load_config(config, **overrides)  # a dict is merged over the defaults too, and the overrides over it
    checkpoint = Checkpoint(out, fingerprint(cfg, seed, deterministic))
    state = _resumable(checkpoint, out) if resume else None
    if state is None:
        out = prepare_out_dir(out, force=force, confirm=confirm, inputs=_inputs(config, cfg))
        state = checkpoint.start()
    ctx = RunContext(cfg, Path(out), seed, checkpoint=checkpoint)
    checkpoint.restore(ctx, state)
    ctx.metrics.update({"advkeras": __version__, "tensorflow": tf.__version__, "python": platform.python_version(),
                        "seed": seed, "config": cfg, "command": " ".join(["advkeras"] + sys.argv[1:])
                        if Path(sys.argv[0]).name == "advkeras" else f"advkeras.assess(seed={seed}"
                        + (", resume=True)" if resume else ")")})
    ctx.metrics["deterministic"] = deterministic
    done, stage_seconds, resumed = list(state["completed"]), dict(state["stage_seconds"]), []
    start = time.perf_counter()
    for stage in tqdm(STAGES, desc="assessment", unit="stage"):
        name = stage.__name__.removeprefix("stage_")
        if name in done and name not in RERUN_ON_RESUME:
            _restore_stage(ctx, name)
            resumed.append(name)
            continue
        before = ctx.metrics.get(name)
        t = time.perf_counter()
        stage(ctx)
        stage_seconds[name] = time.perf_counter() - t
        if name in done:  # rerun on resume: it must rebuild what the killed run had
            _check_same(name, before, ctx.metrics.get(name))
        else:
            done.append(name)
        if set(done) - set(RERUN_ON_RESUME):  # the data stage alone is redone anyway: no checkpoint, and a run
            checkpoint.commit(ctx, done, stage_seconds)  # refused at the model (bad input) leaves --out empty
    ctx.metrics["seconds"] = time.perf_counter() - start  # this call; a resumed run's stages: stage_seconds
    ctx.metrics["stage_seconds"] = stage_seconds
    ctx.metrics["resumed_stages"] = resumed
    ctx.metrics["resumed_attacks"] = list(checkpoint.resumed_attacks)
    ctx.metrics["figures"] = ctx.figures
    write_json(ctx.out / "metrics.json", ctx.metrics)
    write_report_md(ctx)
    render_report(ctx.metrics, ctx.figures, ctx.out)
    return ctx


# Stages run again on resume instead of being restored: the data splits are rebuilt from the file index (cheap,
# and deterministic from the seed), so the checkpoint holds no images.
RERUN_ON_RESUME = ("data",)


def _resumable(checkpoint: Checkpoint, out: str | Path) -> dict | None:
    """The checkpoint's state if `out` holds one of this run; None (and a log line) when it holds none."""
    if not checkpoint.exists():
        log.info("no checkpoint in %s: starting the assessment from the beginning", out)
        return None
    state = checkpoint.read()  # refuses another run's checkpoint
    log.info("resuming the assessment in %s: stages done %s", out, ", ".join(state["completed"]) or "none")
    return state


def _restore_stage(ctx: RunContext, name: str) -> None:
    """What a finished stage left on the context beyond the checkpoint's metrics and results: the model."""
    if name != "model":
        return
    path = ctx.config.get("model") or ctx.out / "model.keras"  # a given model (fingerprinted) or the one trained
    try:
        ctx.model = load_model(path)
    except ModelError as exc:
        raise InputError(f"cannot resume: the model of the checkpointed run cannot be loaded ({exc}); pass --force "
                         "without --resume to start again.") from exc


def _check_same(name: str, before: Any, after: Any) -> None:
    """A stage rerun on resume must give what the killed run recorded (e.g. the data folder is unchanged)."""
    if before is not None and plain(before) != plain(after):
        raise InputError(f"cannot resume: stage {name!r} gives other results than in the checkpointed run (did its "
                         "input, e.g. the data folder, change?); pass --force without --resume to start again.")


def _inputs(config: str | Path | dict | None, cfg: dict) -> list:
    """Files the run reads (config, data folder, model), so --force never deletes them first."""
    return [None if isinstance(config, dict) else config, cfg.get("data"), cfg.get("model")]
