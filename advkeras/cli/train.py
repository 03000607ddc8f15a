"""`advkeras train`: train a classifier on a dataset name or path, save it and its metrics."""
from __future__ import annotations

import click

from advkeras.cli.options import COUNT, POSITIVE, common_options, confirm_overwrite, deterministic_option


@click.command("train")
@click.option("--data", default="idc", show_default=True,
              help="Embedded sample name (idc, mnist) or a dataset folder (IDC tree, MNIST IDX, image folder).")
@click.option("--backbone", type=click.Choice(["vgg16", "vgg_mini", "lenet", "densenet_mini"]), default=None,
              help="Model backbone [default: lenet for 1-channel data, vgg_mini otherwise].")
@click.option("--epochs", type=COUNT, default=25, show_default=True)
@click.option("--batch-size", type=COUNT, default=64, show_default=True)
@click.option("--learning-rate", type=POSITIVE, default=1e-3, show_default=True)
@click.option("--in-memory", is_flag=True,
              help="Decode a dataset folder into memory first (faster epochs for sets that fit); by default its "
                   "images stay on disk and stream, so memory does not grow with their number.")
@deterministic_option
@common_options("runs/train")
def train(data: str, backbone: str | None, epochs: int, batch_size: int, learning_rate: float, in_memory: bool,
          seed: int, out: str, force: bool, deterministic: bool) -> None:
    """Train a cnn+dnn classifier; writes OUT/model.keras and OUT/metrics.json."""
    from advkeras.runs import prepare_out_dir, write_json
    from advkeras.models.training import fit_on_dataset

    out_dir = prepare_out_dir(out, force=force, confirm=confirm_overwrite, inputs=[data])
    model, metrics = fit_on_dataset(data, backbone=backbone, epochs=epochs, batch_size=batch_size,
                                    learning_rate=learning_rate, seed=seed, lazy=not in_memory)
    model.save(out_dir / "model.keras")
    write_json(out_dir / "metrics.json", {**metrics, "deterministic": deterministic})
    click.echo(f"held-out accuracy {metrics['test']['accuracy']:.3f} -> {out_dir / 'model.keras'}")
