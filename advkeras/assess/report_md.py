"""The short Markdown report of a run (the HTML report comes later and reads the same metrics)."""
from __future__ import annotations

from pathlib import Path

from advkeras.assess.context import RunContext


def write_report_md(ctx: RunContext) -> Path:
    m = ctx.metrics
    test = m["model"]["test"]
    lines = [f"# advkeras assessment: {m['data']['name']}", "",
             f"Command: `{m['command']}` (seed {ctx.seed}).", "",
             "## Model", "",
             f"- {m['model']['name']}, {m['model']['params']:,} parameters",
             f"- held-out accuracy **{test['accuracy']:.3f}** on {test['n']} images"
             + (f" of patients {', '.join(test['groups'])}" if test.get("groups") else ""),
             "- recall per class: " + ", ".join(f"{k} {v:.3f}" for k, v in test["per_class_recall"].items()
                                                 if v is not None), "",
             "## Attacks", "", "| attack | backend | eps | success rate | on correctly classified | median Linf |",
             "|---|---|---|---|---|---|"]
    for r in m.get("attacks", []):
        eps = "-" if r["eps"] is None else f"{r['eps']:.4f} ({r['eps'] * 255:.0f}/255)"
        med = "-" if r["median_linf_success"] is None else f"{r['median_linf_success']:.4f}"
        lines.append(f"| {r['attack']} | {r['backend']} | {eps} | {r['success_rate']:.3f} | "
                     f"{r['success_rate_on_correct']:.3f} | {med} |")
    path = ctx.out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
