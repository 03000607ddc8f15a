"""`advkeras detect`: evaluate one adversarial-input detector against attacks on held-out data.

Runs the assessment's data, model and attack stages, then the chosen detector's stage, so the
numbers and figures are the same as in `advkeras assess`. Each detector is one entry of DETECTORS:
name -> (config section, stage function); add yours there.
"""
from __future__ import annotations

from typing import Callable

import click

from advkeras.cli.options import COUNT, POSITIVE, common_options, confirm_overwrite


def _feature_response() -> tuple[str, Callable]:
    from advkeras.assess.stage_feature_response import stage_feature_response

    return "feature_response", stage_feature_response


def _relevant_neurons() -> tuple[str, Callable]:
    from advkeras.assess.stage_relevant_neurons import stage_relevant_neurons

    return "relevant_neurons", stage_relevant_neurons


DETECTORS: dict[str, Callable[[], tuple[str, Callable]]] = {"feature-response": _feature_response,
                                                            "relevant-neurons": _relevant_neurons}


@click.command("detect")
@click.option("--detector", type=click.Choice(sorted(DETECTORS)), required=True, help="The detector to evaluate.")
@click.option("--data", default=None, help="Embedded sample name (idc, mnist) or a dataset folder [default: idc].")
@click.option("--model", default=None, type=click.Path(dir_okay=False),
              help="A .keras classifier; without it one is trained on --data.")
@click.option("--attack", "attacks", multiple=True, default=("fgsm",), show_default=True,
              help="Attack name (repeat the option for several); see advkeras.attacks.attack_names().")
@click.option("--eps", type=POSITIVE, default=4 / 255, show_default=True,
              help="Budget for attacks that take one (FGSM, PGD, ...); minimisation attacks ignore it.")
@click.option("--max-eval", type=COUNT, default=200, show_default=True, help="Held-out images attacked.")
@click.option("--epochs", type=COUNT, default=None, help="Training epochs when no --model is given.")
@click.option("--window", type=COUNT, default=None, help="feature-response: local-entropy window in pixels.")
@click.option("--mu", type=POSITIVE, default=None, help="relevant-neurons: L1 budget per class [default: 10].")
@click.option("--neuron-set", type=click.Choice(["clean", "adv", "shared", "sym_diff", "all"]), default=None,
              help="relevant-neurons: which relevant set feeds the forest [default: shared].")
@click.option("--with-label/--without-label", default=None,
              help="relevant-neurons: zero neurons not relevant to the predicted class [default: with].")
@click.option("--n-estimators", type=COUNT, default=None, help="relevant-neurons: trees [default: 200].")
@common_options("runs/detect")
def detect(detector: str, data: str | None, model: str | None, attacks: tuple[str, ...], eps: float,
           max_eval: int, epochs: int | None, window: int | None, mu: float | None, neuron_set: str | None,
           with_label: bool | None, n_estimators: int | None, seed: int, out: str, force: bool) -> None:
    """Attack held-out images, fit DETECTOR on clean validation images, write OUT/metrics.json and figures."""
    from advkeras.assess import load_config
    from advkeras.assess.context import RunContext
    from advkeras.assess.stages import stage_attacks, stage_data, stage_model
    from advkeras.attacks import get_attack
    from advkeras.runs import prepare_out_dir, write_json

    section, stage = DETECTORS[detector]()
    cfg = load_config(None, data=data, model=model, max_eval=max_eval)
    if epochs is not None:
        cfg["train"] = {**cfg["train"], "epochs": epochs}
    cfg["attacks"] = [{"name": a, "eps": [eps] if get_attack(a).eps_required else [None]} for a in attacks]
    if window is not None:
        cfg[section] = {**(cfg.get(section) or {}), "window": window}
    extra = {"mu": mu, "neuron_set": neuron_set, "with_label": with_label, "n_estimators": n_estimators}
    cfg[section] = {**(cfg.get(section) or {}), **{k: v for k, v in extra.items() if v is not None}}
    ctx = RunContext(cfg, prepare_out_dir(out, force=force, confirm=confirm_overwrite,
                                         inputs=[model, data]), seed)
    for step in (stage_data, stage_model, stage_attacks, stage):
        step(ctx)
    ctx.metrics["figures"] = ctx.figures
    write_json(ctx.out / "metrics.json", ctx.metrics)
    for row in ctx.metrics.get("detector_summary", []):
        if row.get("adaptive"):  # aimed at the 5 % threshold only: no AUC, no other rates
            click.echo(f"{row['detector']} vs {row['attack']}: detection at 5 % FPR {_num(row['tpr_at_5'])}, "
                       f"fooled unnoticed {row['evasion_k']} of {row['n_attacked']} attacked")
            continue
        click.echo(f"{row['detector']} vs {row['attack']}: AUC {row['auc']:.3f}, detection at 1/5/10 % FPR "
                   f"{row['tpr_at_1']:.3f} / {row['tpr_at_5']:.3f} / {row.get('tpr_at_10', float('nan')):.3f}")
    click.echo(f"metrics: {ctx.out / 'metrics.json'}")


def _num(v: float | None) -> str:
    return "n/a (nothing fooled)" if v is None else f"{v:.3f}"
