"""The risk summary: one level per threat (high / medium / low) with the evidence behind it.

The rules are simple and printed in the report exactly as applied (`RULES`), so a risk officer can check
them. Every level names its evidence: the attack (the strongest run at the budget), eps, n, and for
detectors the false-positive rate actually reached on test images, not the one aimed at.
"""
from __future__ import annotations

from typing import Any

from advkeras.evaluation.detection import proportion_interval

SMALL_EPS = 4.05 / 255  # at or below 4/255 (configs write eps rounded, e.g. 0.01569) is invisible on 8-bit images
HIGH, MEDIUM = 0.5, 0.2  # evasion: success on correctly classified images at which the level is high / medium
DETECT_LOW, DETECT_MEDIUM = 0.9, 0.5  # detection at the reached FPR at which the risk is low / medium
PROCESS_LOW, PROCESS_MEDIUM, PROCESS_MAX_BENIGN = 0.995, 0.9, 0.01
MIN_ADV = 20  # adversarials a detection rate needs before it can support a "low"

RULES = [
    f"Evasion: the strongest attack run at a budget of at most 4/255 (else the smallest budget run) flips a "
    f"share s of correctly classified held-out images; high if s >= {HIGH:.0%}, medium if s >= {MEDIUM:.0%}, "
    "else low. Low needs the model's sanity checks run and passed, else medium.",
    "Evasion after the best defense: degenerate defenses are never chosen. Among the others (those that keep the "
    "original's balanced accuracy within 0.05 on validation patients first), the one with the lowest worst-case "
    "success is best: the highest success of every attack run at the defense eps, adaptive ones included when the "
    "`adaptive` config enables them (white-box PGD with cross-entropy, and with margin loss and restarts; FGSM; BPDA "
    "through its autoencoders; EOT when it answers at random; Square, which needs no gradient, at the configured "
    "query budget; transfer from the original and the other defenses), each named in the evidence; high if "
    f"that success >= {HIGH:.0%}, medium if >= {MEDIUM:.0%}, else low; low needs its sanity checks run and passed.",
    "Adversarial inputs going unnoticed: each detector is judged on the attack at <= 4/255 it detects least, the "
    "adaptive attack included when one was run (it knows the detector and its threshold and must fool the classifier "
    "under it; its strategies and query budget are named in the evidence); detectors attacked adaptively rank "
    "first, and one that was not cannot be low; "
    "then the detector with the highest such detection rate d at the 5 % FPR threshold, among those whose "
    "threshold kept its promise (false-positive rate reached on test not above 5 % "
    "beyond its 95 % interval, and enough calibration images for 5 %) if any does; low if d >= "
    f"{DETECT_LOW:.0%}, medium if d >= {DETECT_MEDIUM:.0%}, else high; not low when the chosen one did not keep "
    f"it or rests on fewer than {MIN_ADV} adversarials.",
    f"Attack campaigns through the API: share c of simulated attack processes caught, share b of benign users "
    f"flagged; low if c >= {PROCESS_LOW:.1%} and b <= {PROCESS_MAX_BENIGN:.0%}, medium if c >= "
    f"{PROCESS_MEDIUM:.0%}, else high; low also needs the 95 % interval of c to stay above "
    f"{PROCESS_MEDIUM:.0%} and that of b below {5 * PROCESS_MAX_BENIGN:.0%}. c is that of the attacker caught "
    "least (attackers who flush the history, use many ids or blind their queries included when they ran, and "
    "named), b that of the benign workload flagged most (re-sent and re-scanned patches included when they ran).",
]


def eps_label(eps: float | None) -> str:
    """A budget as users think of it: in 8-bit grey levels (8/255), one decimal when not whole."""
    if eps is None:
        return "unbounded"
    levels = eps * 255
    return f"{levels:.0f}/255" if abs(levels - round(levels)) < 0.05 else f"{levels:.1f}/255"


def verdict_eps(budgets) -> float | None:
    """The budget verdicts are graded at: the largest run at <= 4/255, else the smallest run (None: none run)."""
    budgets = [float(b) for b in budgets if b is not None]
    small = [b for b in budgets if b <= SMALL_EPS]
    return max(small) if small else min(budgets, default=None)


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
    if budget_only:  # eps 1 (from the clean image, no random start) wins: the gradients lead somewhere
        return f" Sanity check failed ({failed}): the unbounded attack succeeds, but 64/255 does not break every " \
               "image, so masking is not ruled out and the attack figures are lower bounds."
    return f" Sanity checks failed ({failed}): gradient masking suspected, so the attack figures are lower bounds."


def _failed_check(name: str, check: dict | None) -> str:
    if check is None:
        return name
    def pct(v) -> str:
        return "n/a" if v is None or v != v else f"{v:.0%}"

    text = f"{name} {pct(check.get('value'))} vs {pct(check.get('reference'))}"
    if check.get("unbounded_success") is not None:
        text += f", {pct(check['unbounded_success'])} at eps 1"
    return text


def evasion_risks(attacks: list[dict], sanity: dict | None = None) -> list[dict]:
    """The strongest attack at a budget of at most 4/255 (or the smallest budget run), one verdict."""
    rows = [r for r in attacks if r.get("eps") is not None and r.get("norm", "linf") == "linf"]
    if not rows:
        return []
    small = [r for r in rows if r["eps"] <= SMALL_EPS] or \
        [r for r in rows if r["eps"] == min(x["eps"] for x in rows)]
    best = max(small, key=_rate)
    if _rate(best) < 0:
        return [{"threat": "evasion at a small budget", "level": "unmeasured", "attack": best["attack"],
                 "eps": best["eps"], "n": _n_correct(best), "value": None,
                 "reason": "no attack at this budget had correctly classified images to attack."}]
    rate = _rate(best)
    level = _level(rate, HIGH, MEDIUM)
    note = sanity_note(sanity) if sanity else " Sanity checks not run: the level cannot be low."
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
    """The non-degenerate defense with the lowest worst-case success; those that keep the original's balanced
    accuracy on validation patients (the fidelity target) come first; ties: higher balanced accuracy."""
    usable = [d for d in defenses if not d.get("degenerate") and d.get("worst_case_success") is not None
              and d["worst_case_success"] == d["worst_case_success"]]
    if not usable:
        return None
    return min(usable, key=lambda d: (d.get("keeps_val_balanced_accuracy") is False, d["worst_case_success"],
                                      -(d.get("balanced_accuracy") or 0.0)))


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
    sanity = best.get("sanity_checks")
    note = sanity_note(sanity) if sanity else " Sanity checks not run: the level cannot be low."
    if note and level == "low":
        level = "medium"
    original = best.get("original_worst_case_success", best.get("original_success"))
    ci = best.get("worst_case_ci") or [None, None]
    versus = ""
    if original is not None:
        versus = f" Without a defense the strongest attack flips {original:.0%}"
        if ci[0] is not None and ci[0] <= original:
            versus += "; within this interval, so no defense is measurably better than none"
        versus += "."
    fidelity = " It misses the fidelity target (balanced accuracy on validation patients not kept within 0.05); " \
        "no defense met it." if best.get("keeps_val_balanced_accuracy") is False else ""
    interval = "" if ci[0] is None else f", 95 % interval {ci[0]:.0%}-{ci[1]:.0%}"
    bal, ref = best.get("balanced_accuracy"), best.get("original_balanced_accuracy")
    cost = "" if bal is None or ref is None else f" Balanced accuracy {bal:.3f} (original {ref:.3f})."
    recovered = best.get("recovered")
    known = "" if recovered is None or recovered != recovered else \
        f" Known adversarials no longer adversarial: {recovered:.0%} (balanced over classes " \
        f"{best.get('recovered_balanced', float('nan')):.0%}, n={best.get('recovered_n')}; not adaptive)."
    adaptive = " (adaptive battery run)" if best.get("adaptive") else \
        " (non-adaptive attacks only: the adaptive battery was not run, so this is a lower bound)"
    return [{"threat": "evasion after the best defense", "level": level, "defense": best["defense"],
             "eps": best.get("eps"), "n": best.get("worst_case_n"), "value": rate, "adaptive": bool(best.get("adaptive")),
             "reason": f"{best['defense']}: the strongest of {best.get('attacks_run', 'the')} attack runs{adaptive}, "
                       f"{best.get('worst_case_attack')}, flips {rate:.0%} "
                       f"of the {best.get('worst_case_n')} held-out images it classifies correctly at eps "
                       f"{eps_label(best.get('eps'))}{interval}.{versus}{cost}{fidelity}{known}{note}{excluded}"}]


def _threshold_caveats(row: dict) -> list[str]:
    """Why a detector's 5 % threshold cannot be taken at its word (empty when it can)."""
    notes = []
    ci = row.get("fpr_reached_ci") or [None, None]
    if ci[0] is not None and ci[0] > row.get("target_fpr", 0.05):
        notes.append("the threshold missed its 5 % target on test")
    if row.get("calibration_enough") is False:
        notes.append(f"only {row.get('n_calibration')} clean calibration images, too few for a 5 % threshold")
    return notes


def _row_eps(row: dict) -> float | None:
    if row.get("eps") is not None:
        return float(row["eps"])
    try:
        return float(str(row.get("attack", "")).rsplit("@", 1)[1])
    except (IndexError, ValueError):
        return None


def _detector_worst_rows(rows: list[dict]) -> list[dict]:
    """Per detector, its row with the lowest detection rate among the attacks at <= 4/255 (all attacks when
    none is that small): a detector is as good as the attack it misses most."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["detector"], []).append(r)
    out = []
    for group in by.values():
        small = [r for r in group if (_row_eps(r) or 1.0) <= SMALL_EPS] or group
        out.append(min(small, key=lambda r: r["tpr_at_5"]))
    return out


def detection_risk(detectors: list[dict]) -> list[dict]:
    """Undetected adversarial inputs: per detector the attack it misses most, then the best such detector at its
    5 % FPR threshold, quoting the FPR reached. Detectors whose threshold kept its promise come first."""
    rows = [d for d in detectors if d.get("tpr_at_5") is not None]
    if not rows:
        return []
    attacked = {d["detector"] for d in detectors if d.get("adaptive")}
    # detectors attacked adaptively compete on a measured figure, the others on an upper bound: those first
    best = max(_detector_worst_rows(rows), key=lambda d: (not _threshold_caveats(d), d["detector"] in attacked,
                                                          d["tpr_at_5"]))
    adaptive_run = [d for d in detectors if d.get("adaptive") and d["detector"] == best["detector"]]
    tpr = best["tpr_at_5"]
    level = "low" if tpr >= DETECT_LOW else "medium" if tpr >= DETECT_MEDIUM else "high"
    reached = best.get("fpr_reached", best.get("fpr_at_5"))
    ci = best.get("fpr_reached_ci") or [None, None]
    notes = _threshold_caveats(best)
    n_adv = best.get("n_adv")
    if n_adv is not None and n_adv < MIN_ADV:
        notes.append(f"only {n_adv} adversarials behind the detection rate")
    if not adaptive_run:
        notes.append("no adaptive attack was run against it")
    if notes and level == "low":
        level = "medium"
    detected = "" if n_adv is None else \
        " (95 % interval {:.0%}-{:.0%})".format(*proportion_interval(int(round(tpr * n_adv)), int(n_adv)))
    interval = "" if ci[0] is None else f" (95 % interval {ci[0]:.1%}-{ci[1]:.1%}, n={best.get('n_clean')} clean)"
    return [{"threat": "adversarial inputs going unnoticed", "level": level, "detector": best["detector"],
             "attack": best["attack"], "value": tpr, "fpr_reached": reached, "adaptive": bool(best.get("adaptive")),
             "reason": f"best detector: {best['detector']}; against the attack it misses most at <= 4/255 "
                       f"({best['attack']}) it flags {tpr:.0%}{detected} of {n_adv} adversarials with a threshold set "
                       f"for 5 % false positives on calibration images; on test it reached "
                       + ("an unmeasured rate of false positives" if reached is None else f"{reached:.1%} false positives")
                       + f"{interval}. " + _adaptive_note(best, adaptive_run)
                       + (f" Caveat: {'; '.join(notes)}." if notes else "")}]


def _adaptive_note(best: dict, adaptive_rows: list[dict]) -> str:
    """What the detection verdict says about the attacker knowing the detector."""
    if not adaptive_rows:
        return "Not adaptive: no attack that knows this detector was run, so detection is an upper bound."
    a = adaptive_rows[0]
    if a.get("tpr_at_5") is None:
        return (f"The adaptive attack fooled none of the {a.get('n_attacked')} correctly classified images it attacked "
                "at this budget, so it has no detection rate; the figure above is from a non-adaptive attack.")
    evaded = "" if a.get("evasion_success") is None else \
        (f" The adaptive attack got a wrong answer past it for {a['evasion_success']:.0%} of the {a.get('n_attacked')} "
         "correctly classified images it attacked (95 % interval {:.0%}-{:.0%}).".format(*a["evasion_ci"]))
    which = "Adaptive: this is the attack that knows the detector." if best.get("adaptive") else \
        "The adaptive attack was detected more often than this one."
    return which + evaded


def process_risk(ps: dict[str, Any] | None) -> list[dict]:
    """Attack campaigns through the prediction API (prediction similarity traffic simulation)."""
    if not ps or ps.get("detected_share") is None:
        return []
    d, f = ps["detected_share"], ps.get("benign_flagged_share", 0.0)
    n, m = ps.get("processes"), ps.get("benign_users")
    who = "simulated attack processes"
    if ps.get("worst_detected_share") is not None:  # grade on the attacker caught least, not the average
        d, n, who = ps["worst_detected_share"], ps.get("worst_processes"), f"'{ps['worst_attacker']}' processes"
    where = ""
    if ps.get("worst_workload_flagged_share") is not None:
        f, m, where = (ps["worst_workload_flagged_share"], ps.get("worst_workload_users"),
                       f" of the '{ps['worst_workload']}' workload")
    level = "low" if d >= PROCESS_LOW and f <= PROCESS_MAX_BENIGN else "medium" if d >= PROCESS_MEDIUM else "high"
    intervals, few = "", ""
    if n and m:
        dl, dh = proportion_interval(int(round(d * n)), int(n))
        fl, fh = proportion_interval(int(round(f * m)), int(m))
        intervals = f" (95 % intervals {dl:.0%}-{dh:.0%} and {fl:.0%}-{fh:.0%})"
        if level == "low" and (dl < PROCESS_MEDIUM or fh > 5 * PROCESS_MAX_BENIGN):
            level, few = "medium", " Too few simulated processes or users to support a low level."
    adaptive = ps.get("adaptive_attackers") or []
    tried = (f"attackers who work around it ran: {'; '.join(adaptive)}" if adaptive
             else "attackers not adaptive: no history flushing, many ids or blinding was tried")
    return [{"threat": "attack campaigns through the API", "level": level, "value": d,
             "reason": f"prediction similarity caught {d:.1%} of {n} {who} and flagged {f:.1%} of {m} benign "
                       f"users{where}{intervals} ({tried}).{few}"}]


def risk_summary(metrics: dict[str, Any]) -> list[dict]:
    """All threat rows for the report, from whatever sections the run produced."""
    sanity = (metrics.get("model") or {}).get("sanity_checks")
    return (evasion_risks(metrics.get("attacks", []), sanity) + defense_risk(metrics.get("defense_summary", []))
            + detection_risk(metrics.get("detector_summary", [])) + process_risk(metrics.get("ps_summary")))
