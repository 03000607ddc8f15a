"""The short Markdown report of a run (the HTML report reads the same metrics and shows more)."""
from __future__ import annotations

from pathlib import Path

from advkeras.assess.context import RunContext
from advkeras.evaluation.risk import RULES, eps_label, risk_summary


def _num(v) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def write_report_md(ctx: RunContext) -> Path:
    m = ctx.metrics
    test = m["model"]["test"]
    lines = [f"# advkeras assessment: {m['data']['name']}", "",
             f"Command: `{m['command']}` (seed {ctx.seed}).", ""]
    if m.get("resumed_stages") or m.get("resumed_attacks"):
        lines += [f"Resumed from a checkpoint: stages {', '.join(m.get('resumed_stages') or []) or 'none'} and "
                  f"attacks {', '.join(m.get('resumed_attacks') or []) or 'none'} came from an interrupted "
                  "earlier try (their `stage_seconds` are that try's).", ""]
    lines += ["## Risk summary", "", "| level | threat | why |", "|---|---|---|"]
    lines += [f"| {r['level']} | {r['threat']} | {r['reason']} |" for r in risk_summary(m)]
    lines += ["", "Rules, as applied:", ""] + [f"- {r}" for r in RULES]
    lines += ["", "## Model", "",
              f"- {m['model']['name']}, {m['model']['params']:,} parameters",
              f"- held-out accuracy **{test['accuracy']:.3f}**, balanced accuracy **{_num(test.get('balanced_accuracy'))}** "
              f"on {test['n']} images" + (f" of patients {', '.join(test['groups'])}" if test.get("groups") else ""),
              "- recall per class: " + ", ".join(f"{k} {v:.3f}" for k, v in test["per_class_recall"].items()
                                                  if v is not None),
              "- share of predictions per class: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                               (test.get("prediction_share") or {}).items()
                                                               if v is not None)]
    ev = (m.get("evaluation") or {}).get("eval_set")
    if ev:
        lines.append(f"- attacked: {ev['n']} held-out images, per class " +
                     ", ".join(f"{k} {v}" for k, v in ev["per_class"].items()))
    lines += ["", "## Attacks", "", "| attack | backend | eps | success rate | on correctly classified | median Linf |",
              "|---|---|---|---|---|---|"]
    for r in m.get("attacks", []):
        eps = "-" if r["eps"] is None else f"{r['eps']:.4f} ({eps_label(r['eps'])})"
        lines.append(f"| {r['attack']} | {r['backend']} | {eps} | {r['success_rate']:.3f} | "
                     f"{r['success_rate_on_correct']:.3f} | {_num(r['median_linf_success'])} |")
    rows = m.get("defense_summary", [])
    if rows:
        lines += ["", "## Defenses", "", "| defense | balanced accuracy | degenerate | worst-case success (adaptive "
                  "included) | attack | without adaptive attacks | known adversarials recovered (balanced) | "
                  "gradient masking suspected |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['defense']} | {_num(r['balanced_accuracy'])} | {'yes' if r['degenerate'] else 'no'} | "
                  f"{_num(r['worst_case_success'])} | {r['worst_case_attack']} | "
                  f"{_num(r.get('non_adaptive_worst_case_success'))} | {_num(r['recovered'])} "
                  f"({_num(r['recovered_balanced'])}) | {r['gradient_masking_suspected']} |" for r in rows]
    detectors = m.get("detector_summary", [])
    if detectors:
        lines += ["", "## Detectors", "", "| detector | attack | adaptive | detection at 5 % FPR | adaptive detection "
                  "(same eps) | fooled unnoticed (adaptive) | FPR reached | clean / adversarial |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['detector']} | {r['attack']} | {'yes' if r.get('adaptive') else 'no'} | "
                  f"{_num(r.get('tpr_at_5'))} | {_num(r.get('adaptive_tpr_at_5'))} | "
                  f"{_num(r.get('evasion_success'))} | {_num(r.get('fpr_reached'))} | "
                  f"{r.get('n_clean')} / {r.get('n_adv')} |" for r in detectors]
    path = ctx.out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
