"""Assessment stage: prediction similarity against attack processes in simulated query traffic."""
from __future__ import annotations

import logging

from advkeras.assess.config import section
from advkeras.assess.context import RunContext
from advkeras.evaluation.traffic import evaluate_prediction_similarity
from advkeras.runs import write_json

log = logging.getLogger(__name__)


def stage_prediction_similarity(ctx: RunContext) -> None:
    """Calibrate on benign sessions of validation patients, simulate benign users and attack processes on
    the held-out patients with flip off and on; record `prediction_similarity` and the report's `ps_summary`."""
    cfg = section(ctx.config, "prediction_similarity")
    if not cfg["enabled"]:
        return
    ev = ctx.eval_set()
    result = evaluate_prediction_similarity(
        ctx.model, ctx.fit_set(ctx.val), ev, layer=cfg["layer"], target_fpr=float(cfg["target_fpr"]),
        n_benign=int(cfg["benign_users"]), queries_per_user=int(cfg["queries_per_user"]), attacks=cfg["attacks"],
        processes=int(cfg["processes"]), workloads=tuple(cfg.get("workloads") or ("browse",)), seed=ctx.seed,
        progress=False)
    flag, flip = result["summary"]["flag"], result["summary"]["flip"]
    rows = [r for r in result["runs"]["flag"]["attacks"] if r["detection_rate"] is not None]
    worst = min(rows, key=lambda r: r["detection_rate"]) if rows else None
    workloads = result["runs"]["flag"]["benign"].get("workloads", {})
    ctx.metrics["prediction_similarity"] = result
    ctx.metrics["ps_summary"] = {
        "detected_share": flag["detection_rate"], "benign_flagged_share": flag["benign_user_fpr"],
        "median_queries_to_alarm": flag["median_queries_to_first_alarm"],
        # over the attackers both runs had (flip skips those with a strategy), so the two are comparable
        "success_flip_off": _mean({k: v for k, v in flag["attack_success_true"].items()
                                   if k in flip["attack_success_true"]}),
        "success_flip_on": _mean(flip["attack_success_true"]),
        "processes": flag["processes"], "benign_users": result["runs"]["flag"]["benign"]["users"],
        "worst_attacker": None if worst is None else worst["attack"],
        "worst_detected_share": None if worst is None else worst["detection_rate"],
        "worst_processes": None if worst is None else worst["processes"],
        "adaptive_attackers": [r["attack"] for r in rows if "strategy" in r],
        "worst_workload": max(workloads, key=lambda k: workloads[k]["user_fpr"]) if workloads else None,
        "worst_workload_flagged_share": max((w["user_fpr"] for w in workloads.values()), default=None),
        "worst_workload_users": max((w["users"] for w in workloads.values()), default=None)}
    write_json(ctx.out / "prediction_similarity.json", result)
    log.info("prediction similarity: %d/%d attack processes detected, %.1f%% benign users flagged",
             flag["detected"], flag["processes"], 100 * flag["benign_user_fpr"])


def _mean(by_attack: dict[str, float]) -> float | None:
    return sum(by_attack.values()) / len(by_attack) if by_attack else None
