"""`advkeras export`: the defended model with its detectors as a TF Serving SavedModel."""
from __future__ import annotations

import click

from advkeras.cli.options import RATE, common_options


@click.command("export")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False),
              help="The .keras classifier to serve.")
@click.option("--name", default="advkeras", show_default=True, help="Model name: OUT/<name>/<version>/.")
@click.option("--data", default="idc", show_default=True,
              help="Benign data (sample name or folder) to calibrate the similarity threshold on.")
@click.option("--store", type=click.Choice(["index", "ring"]), default="index", show_default=True,
              help="index: the whole recent history, blinding-resistant, per-user and cross-user; ring: each "
                   "user's last 32 queries (the earlier layer).")
@click.option("--metric", type=click.Choice(["mse", "psnr", "ssim"]), default=None,
              help="Ring store only: the image distance (default mse).")
@click.option("--action", type=click.Choice(["flag", "flip", "block"]), default="flag", show_default=True,
              help="What the server answers to a query that raises the alarm.")
@click.option("--target-fpr", type=RATE, default=0.01, show_default=True,
              help="Share of benign users allowed to raise an alarm (calibration target).")
@click.option("--encoder", "encoder_path", type=click.Path(dir_okay=False), default=None,
              help="A .keras encoder-defense model: adds the encoder_disagreement output.")
@click.option("--feature-response", is_flag=True,
              help="Add the native feature-response entropy score (guided backprop) as an output.")
@common_options("saved_models")
def export(model_path: str, name: str, data: str, store: str, metric: str | None, action: str, target_fpr: float,
           encoder_path: str | None, feature_response: bool, seed: int, out: str, force: bool) -> None:
    """Write OUT/<name>/<n+1>/ (a new version every time; existing versions are never touched)."""
    from advkeras.models import load_model, split_dataset
    from advkeras.data import load_dataset
    from advkeras.serving.build import export_classifier

    from advkeras.errors import InputError

    if metric and store != "ring":
        raise InputError("--metric applies to the ring store only; add --store ring or drop --metric.")
    layer = {"store": store, "action": action, **({"metric": metric or "mse"} if store == "ring" else {})}
    classifier = load_model(model_path)
    encoder = load_model(encoder_path) if encoder_path else None
    _, val, _ = split_dataset(load_dataset(data, lazy=True), seed)  # only the calibration users' images are read
    path, meta = export_classifier(classifier, val, out, name, encoder_model=encoder,
                                   feature_response=feature_response, target_fpr=target_fpr, seed=seed,
                                   **layer)
    cal = meta["calibration"]
    extra = "" if cal.get("global_threshold") is None else f", cross-user {cal['global_threshold']:.5g}"
    click.echo(f"threshold {cal['threshold']:.5g}{extra} ({store} store), calibrated on {cal['n_users']} benign users")
    click.echo(f"exported {path}")
