"""`assess`: run the configured stages on a model and data, write metrics.json and the report."""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import tensorflow as tf
from tqdm.auto import tqdm

from advkeras import __version__
from advkeras.assess.config import load_config
from advkeras.assess.context import RunContext
from advkeras.assess.report_md import write_report_md
from advkeras.assess.stages import STAGES
from advkeras.report import render_report
from advkeras.runs import prepare_out_dir, write_json
from advkeras.seeding import deterministic_ops


def assess(out: str | Path, *, config: str | Path | dict | None = None, seed: int = 0, force: bool = False,
           confirm: Callable[[str], bool] | None = None, deterministic: bool = True,
           **overrides: Any) -> RunContext:
    """Assess a model (or a freshly trained one) on data; returns the run context with all metrics.

    `deterministic` turns on TF's op determinism (process-wide, see `advkeras.seeding.deterministic_ops`)
    so the same seed on the same machine gives the same numbers; False is faster."""
    deterministic = deterministic_ops(deterministic)
    cfg = load_config(config, **overrides)  # a dict is merged over the defaults too, and the overrides over it
    ctx = RunContext(cfg, prepare_out_dir(out, force=force, confirm=confirm, inputs=_inputs(config, cfg)), seed)
    ctx.metrics.update({"advkeras": __version__, "tensorflow": tf.__version__, "python": platform.python_version(),
                        "seed": seed, "config": cfg, "command": " ".join(["advkeras"] + sys.argv[1:])
                        if Path(sys.argv[0]).name == "advkeras" else f"advkeras.assess(seed={seed})"})
    ctx.metrics["deterministic"] = deterministic
    start = time.perf_counter()
    for stage in tqdm(STAGES, desc="assessment", unit="stage"):
        stage(ctx)
    ctx.metrics["seconds"] = time.perf_counter() - start
    ctx.metrics["figures"] = ctx.figures
    write_json(ctx.out / "metrics.json", ctx.metrics)
    write_report_md(ctx)
    render_report(ctx.metrics, ctx.figures, ctx.out)
    return ctx


def _inputs(config: str | Path | dict | None, cfg: dict) -> list:
    """Files the run reads (config, data folder, model), so --force never deletes them first."""
    return [None if isinstance(config, dict) else config, cfg.get("data"), cfg.get("model")]
