"""`advkeras defend`: build one defense around a classifier, evaluate it, save the defended model.

Runs the assessment's data and model stages (same patient-wise split as `advkeras assess` with the
same seed), then the defenses stage restricted to the chosen defense.
"""
from __future__ import annotations

import click

from advkeras.attacks.steps import iterative_params
from advkeras.cli.options import COUNT, LINF_EPS, common_options, confirm_overwrite, deterministic_option

CHOICES = ("adversarial-training", "middle-ae", "encoder", "initial-ae")
# The paper's retraining as scripts/defenses_table.py runs it (the assess stage's default is a lighter,
# FGSM-only variant): FGSM, BIM and PGD (5 steps of 2.5 eps / 5) on a third of the training images each.
PAPER_RETRAINING = {"attacks": ["fgsm", "bim", "pgd"], "share": 1 / 3, "epochs": 2,
                    "attack_params": {a: iterative_params(5) for a in ("bim", "pgd")}}


@click.command("defend")
@click.option("--defense", type=click.Choice(CHOICES), required=True, help="The defense to build.")
@click.option("--form", type=click.Choice(["retraining", "online-pgd"]), default="retraining", show_default=True,
              help="adversarial-training only: the paper's retraining on FGSM, BIM and PGD adversarials of the "
                   "training set (a third of the images each, 2 epochs), or Madry's online PGD training.")
@click.option("--data", default=None, help="Embedded sample name (idc, mnist) or a dataset folder [default: idc].")
@click.option("--model", default=None, type=click.Path(dir_okay=False),
              help="A .keras classifier to defend; without it one is trained on --data.")
@click.option("--eps", type=LINF_EPS, default=4 / 255, show_default=True,
              help="Linf budget of the adversarials used to train (adversarial training) and to evaluate.")
@click.option("--epochs", type=COUNT, default=None, help="Training epochs of the defense (its default if omitted).")
@click.option("--train-epochs", type=COUNT, default=None, help="Classifier training epochs when no --model is given.")
@click.option("--max-eval", type=COUNT, default=160, show_default=True, help="Held-out images used to evaluate.")
@deterministic_option
@common_options("runs/defend")
def defend(defense: str, form: str, data: str | None, model: str | None, eps: float, epochs: int | None,
           train_epochs: int | None, max_eval: int, seed: int, out: str, force: bool, deterministic: bool) -> None:
    """Write OUT/defenses/<defense>.keras, OUT/metrics.json and figures under OUT/figures/defenses."""
    from advkeras.assess import load_config
    from advkeras.assess.context import RunContext
    from advkeras.assess.stage_defenses import settings, stage_defenses
    from advkeras.assess.stages import stage_data, stage_model
    from advkeras.errors import InputError
    from advkeras.runs import prepare_out_dir, write_json

    name = "pgd-training" if defense == "adversarial-training" and form == "online-pgd" else defense
    cfg = load_config(None, data=data, model=model, max_eval=max_eval)
    if train_epochs is not None:
        cfg["train"] = {**cfg["train"], "epochs": train_epochs}
    if form == "online-pgd" and defense != "adversarial-training":
        raise InputError(f"--form online-pgd applies to --defense adversarial-training only, not {defense}.")
    params = {"pgd-training": {"eps": eps}, "adversarial-training": {"eps": eps, **PAPER_RETRAINING}}.get(name, {})
    if epochs is not None:
        params["epochs"] = epochs
    cfg["defenses"] = {**(cfg.get("defenses") or {}), "enabled": True, "names": [name], "eps": eps,
                       "max_eval": max_eval, "params": {name: params}}
    ctx = RunContext(cfg, prepare_out_dir(out, force=force, confirm=confirm_overwrite,
                                         inputs=[model, data]), seed)
    ctx.metrics.update({"seed": seed, "deterministic": deterministic, "config": {**cfg, "defenses": settings(cfg)}})
    for stage in (stage_data, stage_model, stage_defenses):
        stage(ctx)
    write_json(ctx.out / "metrics.json", ctx.metrics)
    d = ctx.metrics["defenses"]
    acc = d["clean_accuracy"]
    click.echo(f"clean accuracy: original {acc['original']:.3f}, {name} {acc[name]:.3f}")
    rec = d["recovered"][name]
    click.echo("initial adversarials recovered: " + ", ".join(
        f"{a} {r['recovered']:.3f} (n={r['n']})" for a, r in rec.items()))
    new = d["new_adversarials"]
    click.echo(f"new {settings(cfg)['new_attack']} adversarials at eps {eps:.4f}: success on correctly classified "
               f"{new['original']['success_rate_on_correct']:.3f} (original), "
               f"{new[name]['success_rate_on_correct']:.3f} ({name})")
    if d.get("encoder_disagreement"):
        for a, r in d["encoder_disagreement"]["attacks"].items():
            click.echo(f"encoder disagreement on {a}: detection {r['binary']['tpr']:.3f}, "
                       f"false positives {r['binary']['fpr']:.3f}")
    click.echo(f"defended model: {ctx.out / 'defenses' / f'{name}.keras'}")
