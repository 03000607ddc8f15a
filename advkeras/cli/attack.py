"""`advkeras attack`: attack a saved model on a dataset; save adversarials (.npz), a PNG grid and a summary."""
from __future__ import annotations

import click

from advkeras.cli.options import COUNT, common_options, confirm_overwrite


def parse_eps(value: str | None) -> float | None:
    """'8/255', '0.031' or 'none' -> a float (or None for unbounded minimisation attacks)."""
    from advkeras.errors import InputError

    if value is None or value.lower() in ("none", "inf", ""):
        return None
    try:
        num, _, den = value.partition("/")
        return float(num) / (float(den) if den else 1.0)
    except (ValueError, ZeroDivisionError) as exc:
        raise InputError(f"--eps {value!r} is not a number; write e.g. 8/255, 0.031 or none.") from exc


def parse_params(items: tuple[str, ...]) -> dict:
    """('steps=20', 'random_start=false') -> {'steps': 20, 'random_start': False} (YAML scalars)."""
    import yaml

    from advkeras.errors import InputError

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param {item!r} must look like name=value, e.g. --param steps=20.")
        params[key.strip()] = yaml.safe_load(value)
    return params


@click.command("attack")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False),
              help="The .keras classifier to attack (logits out), e.g. from `advkeras train`.")
@click.option("--data", default="idc", show_default=True,
              help="Embedded sample name (idc, mnist) or a dataset folder; its held-out split is attacked.")
@click.option("--attack", "attack_name", default="pgd", show_default=True,
              help="Attack name: fgsm, bim, pgd, fgm, deepfool, cw, boundary, hopskipjump, jsma, onepixel, square.")
@click.option("--eps", default=None, help="Budget in the attack's norm, e.g. 8/255 (Linf) or 1.0 (L2); "
              "omit for minimisation attacks (deepfool, cw, boundary, hopskipjump, jsma, onepixel).")
@click.option("--backend", type=click.Choice(["foolbox", "native", "art"]), default=None,
              help="Where the attack runs [default: the first backend that has it: foolbox, native, art].")
@click.option("--targeted", is_flag=True, help="Aim at class (label + 1) mod C instead of any wrong class.")
@click.option("-n", "--n-images", type=COUNT, default=64, show_default=True, help="Held-out images attacked.")
@click.option("--batch-size", type=COUNT, default=128, show_default=True)
@click.option("--param", "params", multiple=True, help="Attack parameter name=value (repeatable), e.g. steps=20.")
@common_options("runs/attack")
def attack(model_path: str, data: str, attack_name: str, eps: str | None, backend: str | None, targeted: bool,
           n_images: int, batch_size: int, params: tuple[str, ...], seed: int, out: str, force: bool) -> None:
    """Attack MODEL on held-out images of DATA; writes OUT/adversarials.npz, OUT/grid.png, OUT/summary.json."""
    from advkeras.attacks import generate
    from advkeras.attacks.plot import plot_adversarial_grid
    from advkeras.data import load_dataset
    from advkeras.models import load_model, split_dataset
    from advkeras.data import stratified_subset
    from advkeras.runs import prepare_out_dir, write_json

    eps_value, attack_params = parse_eps(eps), parse_params(params)
    model = load_model(model_path)
    ds = load_dataset(data)
    test = stratified_subset(split_dataset(ds, seed)[2], n_images, seed=seed)  # by class, across patients
    x, y = test.x, test.y
    target = (y + 1) % int(model.output_shape[-1]) if targeted else None
    out_dir = prepare_out_dir(out, force=force, confirm=confirm_overwrite, inputs=[model_path, data])
    res = generate(model, x, y, attack_name, eps=eps_value, backend=backend, target=target, batch_size=batch_size,
                   seed=seed, **attack_params)
    res.save(out_dir / "adversarials.npz")
    plot_adversarial_grid(res, out_dir / "grid.png", class_names=tuple(ds.class_names))
    write_json(out_dir / "summary.json", {**res.summary(), "model": str(model_path), "data": str(data),
                                          "seed": seed})
    click.echo(f"{res.attack} ({res.backend}) on {len(x)} images: success {res.success_rate:.3f} "
               f"(on correctly classified: {res.success_rate_on_correct:.3f}) -> {out_dir}")
