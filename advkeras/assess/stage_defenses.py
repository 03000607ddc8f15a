"""Assessment stage: build the defenses around the run's model and evaluate them.

Every model (original and defended) gets accuracy, balanced accuracy, recall and prediction share per
class on all held-out patients and on the validation patients; a degenerate model (one class almost always,
or a balanced accuracy far below the original's) is marked and never chosen as the best defense.
Table 1 (one seed here; scripts/defenses_table.py runs three): share of initial adversarials (made on the
original model) that each defended model classifies correctly again, pooled (the paper's definition), per
class and balanced. New adversarials: each model attacked afresh, white-box (success at eps, median minimal
eps, plus FGSM), and with the original's adversarials transferred; the worst of all these attacks is the
defense's evasion figure. Sanity checks (evaluation.sanity) flag suspected gradient masking per model. The encoder
disagreement detector is scored on the same adversarials. Evaluation images: a seeded subset of the
held-out set, stratified by class and spread over patients.
"""
from __future__ import annotations

import logging
import time
from advkeras.adaptive import calibrated_target, counted, defense_battery, differentiable_from
from advkeras.assess.adaptive import detector_attack_row
from advkeras.assess.adaptive import settings as adaptive_settings
from advkeras.assess.config import section
from advkeras.assess.context import RunContext
from advkeras.attacks import generate, iterative_params
from advkeras.data.sampling import composition, stratified_subset
from advkeras.defenses.build import build_defenses
from advkeras.detectors.encoder_disagreement import EncoderDisagreementDetector
from advkeras.evaluation.defense_figures import plot_new_adversarial_rates, plot_new_adversarials, plot_recovery
from advkeras.evaluation.detection import binary_detection_metrics, detection_metrics, detector_row
from advkeras.evaluation.risk import attack_label
from advkeras.evaluation.robustness import initial_adversarials, mean_std, new_adversarials, recovery_rates
from advkeras.evaluation.sanity import degeneracy, sanity_checks, success_counts
from advkeras.models import evaluate_classifier, save_model

log = logging.getLogger(__name__)


def settings(config: dict) -> dict:
    """The stage's settings: the packaged defaults (configs/default.yaml) merged with the config's `defenses`."""
    return section(config, "defenses")


def stage_defenses(ctx: RunContext) -> None:
    cfg = settings(ctx.config)
    if not cfg["enabled"] or not cfg["names"]:
        return
    start = time.perf_counter()
    built = build_defenses({n: cfg["params"].get(n, {}) for n in cfg["names"]}, ctx.model, ctx.fit_set(ctx.train),
                           ctx.fit_set(ctx.val), seed=ctx.seed)
    models = {n: r.model for n, r in built.items()}
    ctx.defended.update(models)  # later stages (activation graphs) compare these with the original
    every = {"original": ctx.model, **models}
    ev = ctx.eval_set(int(cfg["max_eval"]))
    steps = {a: iterative_params(int(cfg["attack_steps"])) for a in ("bim", "pgd")}
    adv = initial_adversarials(ctx.model, ev.x, ev.y, cfg["attacks"], eps=cfg["eps"], seed=ctx.seed,
                               attack_params=steps, progress=False)
    recovered = recovery_rates(models, adv)
    quality = {n: _quality(ctx, m) for n, m in every.items()}
    new_params = {**steps.get(cfg["new_attack"], {}), **(cfg["new_attack_params"] or {})}
    new_rows, fixed = new_adversarials(every, ev.x, ev.y, attack=cfg["new_attack"], eps=cfg["eps"],
                                       eps_grid=cfg["eps_grid"], seed=ctx.seed, progress=False, **new_params)
    fgsm = {n: generate(m, ev.x, ev.y, "fgsm", eps=cfg["eps"], backend="native", seed=ctx.seed, progress=False)
            for n, m in every.items()}
    runs = {n: _attack_runs(m, ev, fixed[n], fgsm[n], {} if n == "original" else
                            {"original": fixed["original"], **adv}) for n, m in every.items()}
    adaptive = adaptive_settings(ctx.config)
    if adaptive["enabled"]:
        for n, m in every.items():
            runs[n].update(_battery(m, ev, n, fixed, models, adaptive, cfg, ctx.seed))
    transfer = {n: runs[n][_transfer_label(fixed["original"], "original")]["success"] for n in models}
    sanity = {n: sanity_checks(m, ev.x, ev.y, whitebox=fixed[n], steps=int(cfg["attack_steps"]), seed=ctx.seed,
                               single_step=fgsm[n], transfer_adv=None if n == "original" else fixed["original"].clipped)
              for n, m in every.items()} if cfg["sanity_checks"] else {}
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
        "eval_set": composition(ev), "info": {n: r.info for n, r in built.items()}, "recovered": recovered,
        "quality": quality, "clean_accuracy": {n: q["test"]["accuracy"] for n, q in quality.items()},
        "new_adversarials": new_rows, "transfer_success": transfer, "attack_runs": runs, "sanity_checks": sanity,
        "encoder_disagreement": detector, "seconds": time.perf_counter() - start}
    reference = {"original_success": new_rows["original"]["success_rate_on_correct"],
                 "original_worst_case_success": max(r["success"] for r in runs["original"].values())}
    ctx.metrics.setdefault("defense_summary", []).extend(
        {**_summary_row(n, cfg, ev, quality, recovered[n], new_rows[n], transfer[n], runs[n], sanity.get(n)),
         **reference} for n in models)
    if "original" in sanity:
        ctx.metrics.setdefault("model", {})["defense_stage_sanity_checks"] = sanity["original"]
    log.info("defenses: recovered %s", {n: round(recovered[n]["all"]["recovered"], 3) for n in models})


def _battery(model, ev, name: str, fixed: dict, defenses: dict, adaptive: dict, cfg: dict, seed: int) -> dict:
    """The adaptive battery against one model; a defense also gets the other defenses' white-box adversarials."""
    others = {} if name == "original" or not adaptive["transfer_between_defenses"] else \
        {f"{o} (its white-box run)": fixed[o].clipped for o in defenses if o != name}
    runs = defense_battery(model, ev.x, ev.y, cfg["eps"], steps=int(cfg["attack_steps"]),
                           restarts=int(adaptive["restarts"]), bpda=bool(adaptive["bpda"]),
                           eot_samples=int(adaptive["eot_samples"]),
                           square_iterations=int(adaptive["square_iterations"]), transferred=others, seed=seed)
    return {label: {**run, "adaptive": True} for label, run in runs.items()}


def _quality(ctx: RunContext, model) -> dict:
    """Classification metrics on every held-out patient (verdicts) and on the validation patients (the
    fidelity target a defense is built to keep)."""
    return {"test": evaluate_classifier(model, ctx.test),
            "val": evaluate_classifier(model, ctx.val) if ctx.val is not None and len(ctx.val) else None}


def _attack_runs(model, ev, whitebox, fgsm, transferred: dict) -> dict[str, dict]:
    """Every attack this stage ran against `model` at the stage's eps, as {label: {success, k, n, ci}} over
    the images `model` classifies correctly: its own white-box attacks and the adversarials made on the
    original (transfer). The worst case is the highest success among them."""
    out = {}
    for label, res in ((f"{attack_label(whitebox.summary())} white-box", whitebox),
                       (f"{attack_label(fgsm.summary())} white-box", fgsm)):
        out[label] = counted(int(res.fooled.sum()), int(res.correct.sum()), "white-box", adaptive=False)
    for source, res in transferred.items():
        out[_transfer_label(res, source)] = counted(*success_counts(model, ev.x, ev.y, res.clipped), "transfer",
                                                    adaptive=False)
    return out


def _transfer_label(res, source: str) -> str:
    """How `_attack_runs` names adversarials made on the original: its white-box run, or an initial attack."""
    return f"{attack_label(res.summary())} transferred from the original" + \
        (" (white-box run)" if source == "original" else "")


def _summary_row(name: str, cfg: dict, ev, quality: dict, recovered: dict, new: dict, transfer: float,
                 runs: dict, sanity: dict | None) -> dict:
    """One `defense_summary` row: what the risk summary and the report read (see docs/metrics.md)."""
    q, ref = quality[name], quality["original"]
    reasons = degeneracy(q["test"], ref["test"])
    val_drop = (ref["val"]["balanced_accuracy"] - q["val"]["balanced_accuracy"]
                if q["val"] and ref["val"] and q["val"]["balanced_accuracy"] is not None else None)
    whitebox = new["success_rate_on_correct"]
    worst_label = _worst(runs)
    worst = runs[worst_label]
    plain = _worst({k: r for k, r in runs.items() if not r.get("adaptive")})
    return {"defense": name, "eps": cfg["eps"], "n_eval": int(len(ev)), "n_eval_per_class": composition(ev)["per_class"],
            "clean_accuracy": q["test"]["accuracy"], "clean_accuracy_drop": ref["test"]["accuracy"] - q["test"]["accuracy"],
            "balanced_accuracy": q["test"]["balanced_accuracy"],
            "balanced_accuracy_drop": ref["test"]["balanced_accuracy"] - q["test"]["balanced_accuracy"],
            "original_balanced_accuracy": ref["test"]["balanced_accuracy"], "n_test": q["test"]["n"],
            "prediction_share": q["test"]["prediction_share"], "degenerate": bool(reasons),
            "degenerate_reasons": reasons, "val_balanced_accuracy_drop": val_drop,
            "keeps_val_balanced_accuracy": None if val_drop is None else bool(val_drop <= cfg["max_val_balanced_drop"]),
            "recovered": recovered["all"]["recovered"], "recovered_balanced": recovered["all"]["balanced"],
            "recovered_n": recovered["all"]["n"], "new_success": whitebox, "transfer_success": transfer,
            "worst_case_success": worst["success"], "worst_case_attack": worst_label, "worst_case_n": worst["n"],
            "worst_case_ci": worst["ci"], "worst_case_kind": worst.get("kind"),
            "worst_case_adaptive": bool(worst.get("adaptive")), "adaptive": any(r.get("adaptive") for r in runs.values()),
            "attacks_run": len(runs), "non_adaptive_worst_case_success": runs[plain]["success"] if plain else None,
            "median_min_eps": new["median_min_linf"],
            "sanity_checks": sanity, "gradient_masking_suspected": None if sanity is None
            else sanity["gradient_masking_suspected"]}


def _worst(runs: dict) -> str | None:
    """Label of the run with the highest success (NaN never wins)."""
    return max(runs, key=lambda k: -1.0 if runs[k]["success"] != runs[k]["success"] else runs[k]["success"],
               default=None)


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
    calib_set = stratified_subset(ctx.val, 300, seed=ctx.seed).in_memory()
    det = EncoderDisagreementDetector(ctx.model, encoder_model).fit(calib_set.x, calib_set.y)
    calib = det.decision_function(calib_set.x)
    clean_flags, clean_scores = det.predict(ev.x).astype(bool), det.decision_function(ev.x)
    out = {"clean_flag_rate_val": det.clean_flag_rate_, "attacks": {}}
    rows = []
    for name, res in adv.items():
        x_adv = res.clipped[res.fooled]
        if len(x_adv) < 2:
            continue
        binary = binary_detection_metrics(clean_flags, det.predict(x_adv).astype(bool))
        graded = detection_metrics(clean_scores, det.decision_function(x_adv), calibration_scores=calib)
        out["attacks"][name] = {"binary": binary, "graded": graded}
        rows.append(detector_row("encoder disagreement", f"{name} (native, defense set)@{res.eps}", graded,
                                 eps=res.eps, disagreement_tpr=binary["tpr"], disagreement_fpr=binary["fpr"]))
    diff = differentiable_from(det.differentiable_score, calib_set.x, exact=True, what="its own score")
    target = calibrated_target("encoder disagreement", det.decision_function, calib, differentiable=diff)
    row, res = detector_attack_row(ctx, rows, target, settings(ctx.config)["eps"], clean_scores, calib)
    if row is not None:
        # the deployed rule flags disagreeing classes; the score threshold is the graded view of it
        k = int((res.fooled & (det.predict(res.x_adv) == 0)).sum()) if res.n else 0
        row.update(binary_evasion_success=k / res.n if res.n else None, binary_evasion_k=k,
                   served_by="the original model (the encoder model runs beside it as the detector)")
    out["adaptive"] = row
    ctx.metrics.setdefault("detector_summary", []).extend(rows)
    return out
