"""Assessment stage: build the defenses around the run's model and evaluate them.

Table 1 (one seed here; scripts/defenses_table.py runs three): share of initial adversarials
(made on the original model) that each defended model classifies correctly again, and clean
accuracy. New adversarials: each model attacked afresh (success at eps, median minimal eps).
The encoder disagreement detector is scored on the same adversarials. Default settings keep the
stage near a minute on 2 CPU cores; heavier ones (PGD adversarial training, more epochs) are options.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from advkeras.assess.context import RunContext
from advkeras.attacks import iterative_params
from advkeras.defenses.build import build_defenses
from advkeras.detectors.encoder_disagreement import EncoderDisagreementDetector
from advkeras.evaluation.defense_figures import plot_new_adversarial_rates, plot_new_adversarials, plot_recovery
from advkeras.evaluation.detection import binary_detection_metrics, detection_metrics
from advkeras.evaluation.robustness import clean_accuracy, initial_adversarials, mean_std, new_adversarials, \
    recovery_rates
from advkeras.models import save_model

log = logging.getLogger(__name__)
DEFAULTS: dict[str, Any] = {
    "enabled": True, "names": ["adversarial-training", "middle-ae", "encoder", "initial-ae"],
    "eps": 4 / 255, "attacks": ["fgsm", "bim", "pgd"], "attack_steps": 5, "max_eval": 96,
    "params": {"adversarial-training": {"attacks": ["fgsm"], "epochs": 1}, "middle-ae": {"epochs": 15},
               "encoder": {"epochs": 20}, "initial-ae": {"epochs": 3}},
    "new_attack": "fgsm", "eps_grid": [e / 255 for e in (1, 2, 4, 8, 16)], "save_models": True,
}


def settings(config: dict) -> dict:
    """The stage's settings: the packaged defaults updated by the config's `defenses` section."""
    user = dict(config.get("defenses") or {})
    params = {**DEFAULTS["params"], **{k: {**DEFAULTS["params"].get(k, {}), **v}
                                       for k, v in (user.pop("params", None) or {}).items()}}
    return {**DEFAULTS, **user, "params": params}


def stage_defenses(ctx: RunContext) -> None:
    cfg = settings(ctx.config)
    if not cfg["enabled"] or not cfg["names"]:
        return
    start = time.perf_counter()
    built = build_defenses({n: cfg["params"].get(n, {}) for n in cfg["names"]}, ctx.model, ctx.train, ctx.val,
                           seed=ctx.seed)
    models = {n: r.model for n, r in built.items()}
    ctx.defended.update(models)  # later stages (activation graphs) compare these with the original
    ev = ctx.eval_set()
    ev = ev.subset(slice(0, min(len(ev), int(cfg["max_eval"]))))
    steps = {a: iterative_params(int(cfg["attack_steps"])) for a in ("bim", "pgd")}
    adv = initial_adversarials(ctx.model, ev.x, ev.y, cfg["attacks"], eps=cfg["eps"], seed=ctx.seed,
                               attack_params=steps, progress=False)
    recovered = recovery_rates(models, adv)
    acc = clean_accuracy({"original": ctx.model, **models}, ev.x, ev.y)
    new_params = steps.get(cfg["new_attack"], {})
    new_rows, fixed = new_adversarials({"original": ctx.model, **models}, ev.x, ev.y, attack=cfg["new_attack"],
                                       eps=cfg["eps"], eps_grid=cfg["eps_grid"], seed=ctx.seed, progress=False,
                                       **new_params)
    table = {"eps": cfg["eps"], "seeds": [ctx.seed], "attacks": cfg["attacks"],
             "summary": mean_std([{"recovered": {d: {a: r["recovered"] for a, r in rows.items()}
                                                 for d, rows in recovered.items()}}])}
    _figures(ctx, table, fixed, new_rows, ev.class_names)
    detector = _encoder_disagreement(ctx, models.get("encoder"), ev, adv)
    if cfg["save_models"]:
        for name, m in models.items():
            save_model(m, ctx.out / "defenses" / f"{name}.keras", overwrite=True)
    ctx.metrics["defenses"] = {
        "settings": {k: v for k, v in cfg.items() if k != "params"}, "params": cfg["params"], "n_eval": len(ev),
        "info": {n: r.info for n, r in built.items()}, "recovered": recovered, "clean_accuracy": acc,
        "new_adversarials": new_rows, "encoder_disagreement": detector, "seconds": time.perf_counter() - start}
    ctx.metrics.setdefault("defense_summary", []).extend(
        {"defense": n, "clean_accuracy": acc[n], "clean_accuracy_drop": acc["original"] - acc[n],
         "recovered": recovered[n]["all"]["recovered"], "new_success": new_rows[n]["success_rate_on_correct"],
         "median_min_eps": new_rows[n]["median_min_linf"]} for n in models)
    log.info("defenses: recovered %s", {n: round(recovered[n]["all"]["recovered"], 3) for n in models})


def _figures(ctx: RunContext, table: dict, fixed: dict, rows: dict, class_names) -> None:
    png = plot_recovery(table, ctx.figure_path("defenses", "recovered.png"))
    ctx.add_figure("defenses", "recovered", png, "Initial adversarials (made on the original model) that each "
                   "defended model classifies correctly again (Table 1 of the defense paper, one seed)")
    png = plot_new_adversarials(fixed, ctx.figure_path("defenses", "new_adversarials.png"), n_samples=2,
                                class_names=tuple(class_names))
    ctx.add_figure("defenses", "new_adversarials", png, "New adversarials made on each model, side by side, "
                   "with their perturbations magnified")
    png = plot_new_adversarial_rates(rows, ctx.figure_path("defenses", "new_adversarial_rates.png"))
    ctx.add_figure("defenses", "new_adversarial_rates", png, "New adversarials: success rate at the fixed eps "
                   "and median minimal Linf per model")


def _encoder_disagreement(ctx: RunContext, encoder_model, ev, adv: dict) -> dict | None:
    """Disagreement flags (binary) and the graded score (AUC, detection at fixed FPR) per attack."""
    if encoder_model is None:
        return None
    if ctx.val is None or len(ctx.val) < 20:
        log.warning("encoder disagreement detector skipped: it is calibrated on validation images and this run "
                    "has %d.", 0 if ctx.val is None else len(ctx.val))
        return None
    det = EncoderDisagreementDetector(ctx.model, encoder_model).fit(ctx.val.x[:300], ctx.val.y[:300])
    calib = det.decision_function(ctx.val.x[:300])
    clean_flags, clean_scores = det.predict(ev.x).astype(bool), det.decision_function(ev.x)
    out = {"clean_flag_rate_val": det.clean_flag_rate_, "attacks": {}}
    for name, res in adv.items():
        x_adv = res.clipped[res.success & (res.pred_clean == res.y)]
        if len(x_adv) < 2:
            continue
        binary = binary_detection_metrics(clean_flags, det.predict(x_adv).astype(bool))
        graded = detection_metrics(clean_scores, det.decision_function(x_adv), calibration_scores=calib)
        out["attacks"][name] = {"binary": binary, "graded": graded}
        at = graded["at_fpr"]
        ctx.metrics.setdefault("detector_summary", []).append(
            {"detector": "encoder disagreement", "attack": f"{name}@{res.eps}", "auc": graded["auc"],
             "tpr_at_1": at["0.01"]["tpr"], "tpr_at_5": at["0.05"]["tpr"], "tpr_at_10": at["0.1"]["tpr"],
             "fpr_at_5": at["0.05"]["fpr"], "n_clean": graded["n_clean"], "n_adv": graded["n_adv"],
             "disagreement_tpr": binary["tpr"], "disagreement_fpr": binary["fpr"]})
    return out
