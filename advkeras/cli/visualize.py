"""`advkeras visualize`: activation graphs of the dense part, original vs defended models."""
from __future__ import annotations

import click

from advkeras.cli.options import COUNT, LINF_EPS, common_options, confirm_overwrite


@click.command("visualize")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False),
              help="The original .keras classifier.")
@click.option("--defended", multiple=True, metavar="NAME=PATH",
              help="A defended .keras model to compare (repeatable), e.g. middle-ae=runs/x/defenses/middle-ae.keras.")
@click.option("--data", default="idc", show_default=True, help="Sample name or dataset folder (held-out split used).")
@click.option("--attack", "attacks", multiple=True, default=("fgsm", "bim", "pgd"), show_default=True,
              help="Attack(s) whose adversarials (made on the original model) are drawn.")
@click.option("--eps", type=LINF_EPS, default=4 / 255, show_default=True, help="Linf budget in [0, 1] units.")
@click.option("--n-images", type=COUNT, default=100, show_default=True)
@common_options("runs/visualize")
def visualize(model_path: str, defended: tuple[str, ...], data: str, attacks: tuple[str, ...], eps: float,
              n_images: int, seed: int, out: str, force: bool) -> None:
    """Write OUT/*.png activation graphs and OUT/activation_graphs.json (per-layer numbers)."""
    from advkeras.data import load_dataset, stratified_subset
    from advkeras.errors import InputError
    from advkeras.evaluation.activation_graphs import compare_defense_activations
    from advkeras.models import load_model, split_dataset
    from advkeras.runs import prepare_out_dir, write_json

    pairs = [d.split("=", 1) for d in defended]
    if any(len(p) != 2 or not p[0] for p in pairs):
        raise InputError("--defended takes NAME=PATH, e.g. --defended middle-ae=runs/demo/defenses/middle-ae.keras")
    out_dir = prepare_out_dir(out, force=force, confirm=confirm_overwrite,
                              inputs=[model_path, data, *(p[1] for p in pairs)])
    original = load_model(model_path)
    models = {name: load_model(path) for name, path in pairs}
    held_out = split_dataset(load_dataset(data, lazy=True), seed)[2]  # a folder stays on disk but the drawn images
    test = stratified_subset(held_out, n_images, seed=seed).in_memory()  # by class, across patients
    rows, figures = compare_defense_activations(original, models, test.x, test.y, out_dir, attacks=list(attacks),
                                                eps=eps, seed=seed)
    write_json(out_dir / "activation_graphs.json", {"model": model_path, "defended": dict(pairs), "eps": eps,
                                                    "attacks": list(attacks), "seed": seed, "rows": rows})
    for path in figures.values():
        click.echo(f"figure {path}")
