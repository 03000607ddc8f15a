"""The risk summary: one level per threat (high / medium / low) with the numbers that justify it.

The rules are deliberately simple and printed in the report, so a risk officer can check them:
- evasion: share of correctly classified held-out images an attack flips at a small budget;
- residual risk after the best defense, and its accuracy cost;
- detection: the best detector's detection rate at 5 % false positives;
- attack processes: share of simulated attack campaigns caught by prediction similarity.
"""
from __future__ import annotations

from typing import Any

SMALL_EPS = 4.05 / 255  # at or below 4/255 (configs write eps rounded, e.g. 0.01569) is invisible on 8-bit images


def eps_label(eps: float | None) -> str:
    """A budget as users think of it: in 8-bit grey levels (8/255), one decimal when not whole."""
    if eps is None:
        return "unbounded"
    levels = eps * 255
    return f"{levels:.0f}/255" if abs(levels - round(levels)) < 0.05 else f"{levels:.1f}/255"


def _level(value: float, high: float, medium: float, higher_is_riskier: bool = True) -> str:
    v = value if higher_is_riskier else -value
    h, m = (high, medium) if higher_is_riskier else (-high, -medium)
    return "high" if v >= h else "medium" if v >= m else "low"


def evasion_risks(attacks: list[dict]) -> list[dict]:
    """Per attack: the worst success rate at a budget of at most 4/255 (or the smallest budget run)."""
    by_attack: dict[str, list[dict]] = {}
    for row in attacks:
        by_attack.setdefault(row["attack"], []).append(row)
    out = []
    for name, rows in by_attack.items():
        small = [r for r in rows if r["eps"] is not None and r["eps"] <= SMALL_EPS] or \
            sorted(rows, key=lambda r: r["eps"] if r["eps"] is not None else 1.0)[:1]
        worst = max(small, key=lambda r: r["success_rate_on_correct"] or 0)
        rate = worst["success_rate_on_correct"] or 0.0
        eps = "unbounded" if worst["eps"] is None else f"eps {eps_label(worst['eps'])}"
        out.append({"threat": f"evasion by {name.upper()}", "level": _level(rate, 0.5, 0.2),
                    "reason": f"{rate:.0%} of correctly classified held-out images flipped at {eps}."})
    return out


def defense_risk(defenses: list[dict]) -> list[dict]:
    """Residual evasion risk after the best defense (rows: defense, recovered, clean_accuracy_drop)."""
    rows = [d for d in defenses if d.get("recovered") is not None]
    if not rows:
        return []
    best = max(rows, key=lambda d: d["recovered"])
    cost = best.get("clean_accuracy_drop") or 0.0
    level = "low" if best["recovered"] >= 0.8 and cost <= 0.03 else "medium" if best["recovered"] >= 0.5 else "high"
    return [{"threat": "evasion after the best defense", "level": level,
             "reason": f"{best['defense']} makes {best['recovered']:.0%} of known adversarials harmless; clean "
                       f"accuracy {'drops by' if cost >= 0 else 'rises by'} {abs(cost) * 100:.1f} points."}]


def detection_risk(detectors: list[dict]) -> list[dict]:
    """Undetected adversarial inputs: the best detector's TPR at 5 % FPR (rows: detector, attack, tpr_at_5)."""
    rows = [d for d in detectors if d.get("tpr_at_5") is not None]
    if not rows:
        return []
    best = max(rows, key=lambda d: d["tpr_at_5"])
    return [{"threat": "adversarial inputs going unnoticed", "level": _level(best["tpr_at_5"], 0.5, 0.9, False),
             "reason": f"best detector ({best['detector']} on {best['attack']}) flags {best['tpr_at_5']:.0%} of "
                       "adversarials at 5 % false positives."}]


def process_risk(ps: dict[str, Any] | None) -> list[dict]:
    """Attack campaigns through the prediction API (prediction similarity traffic simulation)."""
    if not ps or ps.get("detected_share") is None:
        return []
    d, f = ps["detected_share"], ps.get("benign_flagged_share", 0.0)
    level = "low" if d >= 0.995 and f <= 0.01 else "medium" if d >= 0.9 else "high"
    return [{"threat": "attack campaigns through the API", "level": level,
             "reason": f"prediction similarity caught {d:.1%} of simulated attack processes and flagged "
                       f"{f:.1%} of benign users."}]


def risk_summary(metrics: dict[str, Any]) -> list[dict]:
    """All threat rows for the report, from whatever sections the run produced."""
    return (evasion_risks(metrics.get("attacks", [])) + defense_risk(metrics.get("defense_summary", []))
            + detection_risk(metrics.get("detector_summary", [])) + process_risk(metrics.get("ps_summary")))
