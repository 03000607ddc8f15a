"""The stages of `advkeras assess`, in order. Each reads the context and records its numbers."""
from __future__ import annotations

import logging

import numpy as np

from advkeras.assess.config import section
from advkeras.assess.context import RunContext
from advkeras.assess.stage_defenses import stage_defenses
from advkeras.assess.stage_activation_graphs import stage_activation_graphs
from advkeras.assess.stage_feature_response import stage_feature_response
from advkeras.assess.stage_prediction_similarity import stage_prediction_similarity
from advkeras.assess.stage_relevant_neurons import stage_relevant_neurons
from advkeras.attacks import generate
from advkeras.attacks.plot import plot_adversarial_grid
from advkeras.data.sampling import composition
from advkeras.evaluation.risk import eps_label, verdict_eps
from advkeras.evaluation.sanity import sanity_checks
from advkeras.data import load_dataset
from advkeras.errors import InputError
from advkeras.models import evaluate_classifier, load_model, save_model, split_dataset, train_classifier
from advkeras.models.zoo import build_classifier, default_backbone

log = logging.getLogger(__name__)


def stage_data(ctx: RunContext) -> None:
    ds = load_dataset(ctx.config["data"], lazy=True)  # a folder stays on disk; stages draw what they use
    ctx.train, ctx.val, ctx.test = split_dataset(ds, ctx.seed)
    ctx.metrics["data"] = {
        "name": ds.name, "n": len(ds), "on_disk": ds.lazy, "input_shape": list(ds.input_shape), "classes": list(ds.class_names),
        "split": {k: {"n": len(p), "groups": None if p.groups is None else sorted(map(str, np.unique(p.groups)))}
                  for k, p in (("train", ctx.train), ("val", ctx.val), ("test", ctx.test))}}


def stage_model(ctx: RunContext) -> None:
    cfg = ctx.config
    if cfg.get("model"):
        ctx.model = load_model(cfg["model"])
        _check_fits_data(ctx.model, ctx.train, str(cfg["model"]))
        source = {"loaded": str(cfg["model"])}
    else:
        ds = ctx.train
        backbone = cfg.get("backbone") or default_backbone(ds.input_shape)
        ctx.model = build_classifier(backbone, ds.input_shape, ds.n_classes, seed=ctx.seed)
        t = cfg["train"]
        result = train_classifier(ctx.model, ctx.train, ctx.val, epochs=t["epochs"], batch_size=t["batch_size"],
                                  learning_rate=t["learning_rate"], patience=t.get("patience", 6),
                                  augment=ds.name == "idc", seed=ctx.seed)
        save_model(ctx.model, ctx.out / "model.keras")
        source = {"trained": backbone, "epochs_run": len(result.history["loss"]), "saved": "model.keras"}
    ctx.metrics["model"] = {**source, "name": ctx.model.name, "params": int(ctx.model.count_params()),
                            "test": evaluate_classifier(ctx.model, ctx.test)}
    log.info("held-out accuracy: %.3f", ctx.metrics["model"]["test"]["accuracy"])


def _check_fits_data(model, ds, path: str) -> None:
    """A loaded model must take the data's images and predict its classes, or nothing after makes sense."""
    expected, n_classes = tuple(model.input_shape[1:]), int(model.output_shape[-1])
    if tuple(ds.input_shape) != expected or n_classes != ds.n_classes:
        raise InputError(f"{path} takes images of shape {expected} and predicts {n_classes} classes, but data "
                         f"{ds.name!r} has images of shape {tuple(ds.input_shape)} and {ds.n_classes} classes; pass a "
                         "model trained on this data (or the data it was trained on).")


def stage_attacks(ctx: RunContext) -> None:
    ev = ctx.eval_set()
    ctx.metrics["evaluation"] = {"eval_set": composition(ev), "seed": ctx.seed,
                                 "drawn": "seeded, stratified by class, spread over patients"}
    rows = []
    for spec in ctx.config.get("attacks", []):
        for eps in spec.get("eps", [None]):
            key = f"{spec['name']}@{eps}"
            res = ctx.finished_attack(key)  # resumed: the killed run finished this one
            if res is None:
                res = generate(ctx.model, ev.x, ev.y, spec["name"], eps=eps, backend=spec.get("backend"),
                               seed=ctx.seed, **spec.get("params", {}))
            ctx.add_attack(key, res)
            rows.append(res.summary())
            tag = f"{spec['name']}_eps{0 if eps is None else round(eps * 255, 1):g}"
            png = plot_adversarial_grid(res, ctx.figure_path("attacks", f"{tag}.png"),
                                        class_names=ev.class_names)
            ctx.add_figure("attacks", tag, png, f"{spec['name'].upper()} adversarials at "
                           + ("no budget" if eps is None else f"eps {eps_label(eps)}"))
            log.info("%s eps=%s: success rate %.3f", spec["name"], eps, res.success_rate)
    ctx.metrics["attacks"] = rows
    cfg = section(ctx.config, "sanity_checks")
    if cfg["enabled"] and ctx.model is not None:
        ctx.metrics["model"]["sanity_checks"] = _original_sanity(ctx, ev, int(cfg["steps"]))


def _original_sanity(ctx: RunContext, ev, steps: int) -> dict:
    """Sanity checks of the original model at the verdict's budget (the largest eps run at <= 4/255, else the
    smallest run): against the strongest iterative Linf attack the run made there (native PGD when it made
    none) and FGSM at that eps."""
    linf = [r for r in ctx.adversarials.values() if r.norm == "linf" and r.eps is not None]
    eps = verdict_eps(r.eps for r in linf) or 4 / 255
    iterative = [r for r in linf if r.eps == eps and r.params.get("steps", 1) > 1]
    if iterative:
        whitebox = max(iterative, key=lambda r: r.success_rate_on_correct)
    else:
        whitebox = generate(ctx.model, ev.x, ev.y, "pgd", eps=eps, backend="native", steps=steps, seed=ctx.seed,
                            progress=False)
    single = next((r for r in linf if r.attack == "fgsm" and r.eps == eps), None)
    out = sanity_checks(ctx.model, ev.x, ev.y, whitebox=whitebox, steps=steps, seed=ctx.seed, single_step=single)
    if out["failed"]:
        log.warning("sanity checks failed for the original model: %s (gradient masking suspected)", out["failed"])
    return out


STAGES = [stage_data, stage_model, stage_attacks, stage_defenses, stage_prediction_similarity, stage_feature_response,
          stage_relevant_neurons, stage_activation_graphs]
