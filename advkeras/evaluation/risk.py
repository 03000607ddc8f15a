"""The risk summary: one level per threat (high / medium / low) with the evidence behind it.

The rules are simple and printed in the report exactly as applied (`RULES`), so a risk officer can check
them. Every level names its evidence: the attack (the strongest run at the budget), eps, n, and for
detectors the false-positive rate actually reached on test images, not the one aimed at.
"""
from __future__ import annotations

from typing import Any

SMALL_EPS = 4.05 / 255  # at or below 4/255 (configs write eps rounded, e.g. 0.01569) is invisible on 8-bit images
HIGH, MEDIUM = 0.5, 0.2  # evasion: success on correctly classified images at which the level is high / medium
DETECT_LOW, DETECT_MEDIUM = 0.9, 0.5  # detection at the reached FPR at which the risk is low / medium
PROCESS_LOW, PROCESS_MEDIUM, PROCESS_MAX_BENIGN = 0.995, 0.9, 0.01

RULES = [
    f"Evasion: the strongest attack run at a budget of at most 4/255 (else the smallest budget run) flips a "
    f"share s of correctly classified held-out images; high if s >= {HIGH:.0%}, medium if s >= {MEDIUM:.0%}, "
    "else low. Low needs the model's sanity checks passed, else medium (gradient masking suspected).",
    "Evasion after the best defense: degenerate defenses are never chosen. Among the others, the one with the "
    "lowest worst-case success (the highest of its white-box and transferred attacks at the defense eps) is "
    f"best; high if that success >= {HIGH:.0%}, medium if >= {MEDIUM:.0%}, else low; low needs its sanity "
    "checks passed.",
    f"Adversarial inputs going unnoticed: the detector with the highest detection rate d at the 5 % FPR "
    "threshold, among those whose threshold kept its promise (false-positive rate reached on test not above 5 % "
    "beyond its 95 % interval, and enough calibration images for 5 %) if any does; low if d >= "
    f"{DETECT_LOW:.0%}, medium if d >= {DETECT_MEDIUM:.0%}, else high; not low when the chosen one did not keep it.",
    f"Attack campaigns through the API: share c of simulated attack processes caught, share b of benign users "
    f"flagged; low if c >= {PROCESS_LOW:.1%} and b <= {PROCESS_MAX_BENIGN:.0%}, medium if c >= "
    f"{PROCESS_MEDIUM:.0%}, else high. These numbers are not adaptive (no history flushing or many ids).",
]


def eps_label(eps: float | None) -> str:
    """A budget as users think of it: in 8-bit grey levels (8/255), one decimal when not whole."""
    if eps is None:
        return "unbounded"
    levels = eps * 255
    return f"{levels:.0f}/255" if abs(levels - round(levels)) < 0.05 else f"{levels:.1f}/255"


def _level(value: float, high: float, medium: float) -> str:
    return "high" if value >= high else "medium" if value >= medium else "low"


def _rate(row: dict, key: str = "success_rate_on_correct") -> float:
    v = row.get(key)
    return -1.0 if v is None or v != v else float(v)  # NaN / missing never wins a max


def attack_label(row: dict) -> str:
    """An attack as a verdict names it: name, backend and the parameters that make it strong or weak."""
    p = row.get("params") or {}
    bits = [row.get("backend") or ""]
    if p.get("steps", 1) > 1:
        bits.append(f"{p['steps']} steps")
    if p.get("rel_stepsize") and p.get("steps", 1) > 1:
        bits.append(f"step {p['rel_stepsize']:.3g} eps")
    if p.get("loss"):
        bits.append(f"{p['loss']} loss")
    if p.get("restarts", 1) > 1:
        bits.append(f"{p['restarts']} restarts")
    return f"{row['attack'].upper()} ({', '.join(b for b in bits if b)})"


def _n_correct(row: dict) -> int | None:
    if row.get("n") is None or row.get("clean_accuracy") is None:
        return None
    return int(round(row["n"] * row["clean_accuracy"]))


def sanity_note(sanity: dict | None) -> str:
    """' Sanity checks failed (...)' with each failed check's value against its reference, or ''."""
    if not sanity or sanity.get("passed", True):
        return ""
    checks = sanity.get("checks") or {}
    failed = ", ".join(_failed_check(k, checks.get(k)) for k in sanity.get("failed", []))
    budget_only = sanity.get("failed") == ["large_budget"] and \
        (checks.get("large_budget") or {}).get("unbounded_success", 0.0) >= 0.99
    if budget_only:  # gradients lead somewhere (eps 1 wins): the model resists large bounded changes
        return f" Sanity check failed ({failed}): gradients are informative, but 64/255 does not break every image, " \
               "so masking is not ruled out and the attack figures are lower bounds."
    return f" Sanity checks failed ({failed}): gradient masking suspected, so the attack figures are lower bounds."


def _failed_check(name: str, check: dict | None) -> str:
    if check is None:
        return name
    text = f"{name} {check['value']:.0%} vs {check['reference']:.0%}"
    if check.get("unbounded_success") is not None:
        text += f", {check['unbounded_success']:.0%} at eps 1"
    return text


def evasion_risks(attacks: list[dict], sanity: dict | None = None) -> list[dict]:
    """The strongest attack at a budget of at most 4/255 (or the smallest budget run), one verdict."""
    rows = [r for r in attacks if r.get("eps") is not None and r.get("norm", "linf") == "linf"]
    if not rows:
        return []
    small = [r for r in rows if r["eps"] <= SMALL_EPS] or \
        [r for r in rows if r["eps"] == min(x["eps"] for x in rows)]
    best = max(small, key=_rate)
    rate = max(_rate(best), 0.0)
    level = _level(rate, HIGH, MEDIUM)
    note = sanity_note(sanity)
    if note and level == "low":
        level = "medium"
    others = sorted({f"{r['attack'].upper()} {max(_rate(r), 0):.0%} at {eps_label(r['eps'])}" for r in small
                     if r is not best})
    largest = max(rows, key=lambda r: (r["eps"], _rate(r)))
    tail = f" At the largest budget run, {eps_label(largest['eps'])}: {attack_label(largest)} {max(_rate(largest), 0):.0%}."
    return [{"threat": "evasion at a small budget", "level": level, "attack": best["attack"], "eps": best["eps"],
             "n": _n_correct(best), "value": rate,
             "reason": f"{attack_label(best)} flips {rate:.0%} of the {_n_correct(best)} correctly classified held-out "
                       f"images at eps {eps_label(best['eps'])} (strongest of {len(small)} attack runs at this budget"
                       + (f"; others: {', '.join(others)}" if others else "") + ")." + tail + note}]


def best_defense(defenses: list[dict]) -> dict | None:
    """The non-degenerate defense with the lowest worst-case success (ties: higher balanced accuracy)."""
    usable = [d for d in defenses if not d.get("degenerate") and d.get("worst_case_success") is not None
              and d["worst_case_success"] == d["worst_case_success"]]
    if not usable:
        return None
    return min(usable, key=lambda d: (d["worst_case_success"], -(d.get("balanced_accuracy") or 0.0)))


def defense_risk(defenses: list[dict]) -> list[dict]:
    """Residual evasion risk after the best non-degenerate defense (rows of `defense_summary`)."""
    if not defenses:
        return []
    degenerate = [d["defense"] for d in defenses if d.get("degenerate")]
    excluded = f" Excluded as degenerate: {', '.join(degenerate)}." if degenerate else ""
    best = best_defense(defenses)
    if best is None:
        return [{"threat": "evasion after the best defense", "level": "high", "defense": None,
                 "reason": "no defense is usable: every one is degenerate or unmeasured." + excluded}]
    rate = best["worst_case_success"]
    level = _level(rate, HIGH, MEDIUM)
    note = sanity_note(best.get("sanity_checks")) if best.get("gradient_masking_suspected") else ""
    if note and level == "low":
        level = "medium"
    original = best.get("original_success")
    versus = "" if original is None else f" Without a defense the same attack flips {original:.0%}."
    bal, ref = best.get("balanced_accuracy"), best.get("original_balanced_accuracy")
    cost = "" if bal is None or ref is None else f" Balanced accuracy {bal:.3f} (original {ref:.3f})."
    recovered = best.get("recovered")
    known = "" if recovered is None or recovered != recovered else \
        f" Known adversarials no longer adversarial: {recovered:.0%} (balanced over classes " \
        f"{best.get('recovered_balanced', float('nan')):.0%}, n={best.get('recovered_n')}; not adaptive)."
    return [{"threat": "evasion after the best defense", "level": level, "defense": best["defense"],
             "eps": best.get("eps"), "n": best.get("n_eval"), "value": rate,
             "reason": f"{best['defense']}: the strongest attack run ({best.get('worst_case_attack')}) flips {rate:.0%} "
                       f"of correctly classified held-out images at eps {eps_label(best.get('eps'))} "
                       f"(n={best.get('n_eval')}).{versus}{cost}{known}{note}{excluded}"}]


def _threshold_caveats(row: dict) -> list[str]:
    """Why a detector's 5 % threshold cannot be taken at its word (empty when it can)."""
    notes = []
    ci = row.get("fpr_reached_ci") or [None, None]
    if ci[0] is not None and ci[0] > row.get("target_fpr", 0.05):
        notes.append("the threshold missed its 5 % target on test")
    if row.get("calibration_enough") is False:
        notes.append(f"only {row.get('n_calibration')} clean calibration images, too few for a 5 % threshold")
    return notes


def detection_risk(detectors: list[dict]) -> list[dict]:
    """Undetected adversarial inputs: the best detector at its 5 % FPR threshold, quoting the FPR reached.
    Detectors whose threshold kept its promise come first; one that did not is chosen only when none did."""
    rows = [d for d in detectors if d.get("tpr_at_5") is not None]
    if not rows:
        return []
    best = max(rows, key=lambda d: (not _threshold_caveats(d), d["tpr_at_5"]))
    tpr = best["tpr_at_5"]
    level = "low" if tpr >= DETECT_LOW else "medium" if tpr >= DETECT_MEDIUM else "high"
    reached = best.get("fpr_reached", best.get("fpr_at_5"))
    ci = best.get("fpr_reached_ci") or [None, None]
    notes = _threshold_caveats(best)
    if notes and level == "low":
        level = "medium"
    interval = "" if ci[0] is None else f" (95 % interval {ci[0]:.1%}-{ci[1]:.1%}, n={best.get('n_clean')} clean)"
    return [{"threat": "adversarial inputs going unnoticed", "level": level, "detector": best["detector"],
             "attack": best["attack"], "value": tpr, "fpr_reached": reached,
             "reason": f"best detector ({best['detector']} on {best['attack']}) flags {tpr:.0%} of {best.get('n_adv')} "
                       f"adversarials with a threshold set for 5 % false positives on calibration images; on test it "
                       f"reached {reached:.1%} false positives{interval}. Not adaptive: the attacks ignore the detector."
                       + (f" Caveat: {'; '.join(notes)}." if notes else "")}]


def process_risk(ps: dict[str, Any] | None) -> list[dict]:
    """Attack campaigns through the prediction API (prediction similarity traffic simulation)."""
    if not ps or ps.get("detected_share") is None:
        return []
    d, f = ps["detected_share"], ps.get("benign_flagged_share", 0.0)
    level = "low" if d >= PROCESS_LOW and f <= PROCESS_MAX_BENIGN else "medium" if d >= PROCESS_MEDIUM else "high"
    return [{"threat": "attack campaigns through the API", "level": level, "value": d,
             "reason": f"prediction similarity caught {d:.1%} of {ps.get('processes')} simulated attack processes and "
                       f"flagged {f:.1%} of {ps.get('benign_users')} benign users (attackers not adaptive)."}]


def risk_summary(metrics: dict[str, Any]) -> list[dict]:
    """All threat rows for the report, from whatever sections the run produced."""
    sanity = (metrics.get("model") or {}).get("sanity_checks")
    return (evasion_risks(metrics.get("attacks", []), sanity) + defense_risk(metrics.get("defense_summary", []))
            + detection_risk(metrics.get("detector_summary", [])) + process_risk(metrics.get("ps_summary")))
