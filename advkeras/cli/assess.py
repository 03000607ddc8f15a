"""`advkeras assess`: the main job (what `make demo` runs)."""
from __future__ import annotations

import click

from advkeras.cli.options import COUNT, common_options, confirm_overwrite, deterministic_option


@click.command("assess")
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="YAML config (defaults: the packaged configs/default.yaml).")
@click.option("--data", default=None, help="Override the config's data (sample name or folder).")
@click.option("--model", default=None, type=click.Path(dir_okay=False),
              help="A .keras classifier to assess instead of training one.")
@click.option("--epochs", type=COUNT, default=None, help="Override the training epochs.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted assessment in --out from its checkpoint (same config and seed): "
                   "finished stages and attacks are not run again. Without a checkpoint the run starts.")
@deterministic_option
@common_options("runs/assess")
def assess(config: str | None, data: str | None, model: str | None, epochs: int | None, resume: bool, seed: int,
           out: str, force: bool, deterministic: bool) -> None:
    """Train (or load) a model, attack it, and write OUT/metrics.json and OUT/report.md.

    Each finished stage is checkpointed in OUT/checkpoint; after a crash or kill, rerun the same command with
    --resume."""
    from advkeras.assess import assess as run_assessment, load_config

    cfg = load_config(config, data=data, model=model)
    if epochs is not None:
        cfg["train"] = {**cfg["train"], "epochs": epochs}
    ctx = run_assessment(out, config=cfg, seed=seed, force=force, confirm=confirm_overwrite,
                         deterministic=deterministic, resume=resume)
    if ctx.metrics["resumed_stages"] or ctx.metrics["resumed_attacks"]:
        click.echo(f"resumed: stages {', '.join(ctx.metrics['resumed_stages']) or 'none'} and attacks "
                   f"{', '.join(ctx.metrics['resumed_attacks']) or 'none'} came from the checkpoint")
    acc = ctx.metrics["model"]["test"]["accuracy"]
    click.echo(f"held-out accuracy: {acc:.3f}")
    for row in ctx.metrics.get("attacks", []):
        click.echo(f"{row['attack']} eps={row['eps']:.4f}: success rate {row['success_rate']:.3f}")
    click.echo(f"report: {ctx.out / 'report.html'} (summary: {ctx.out / 'report.md'})")
