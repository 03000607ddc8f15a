"""The self-contained HTML assessment report: tables from metrics.json, figures embedded as data URIs."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Iterable

from advkeras.evaluation.risk import RULES, eps_label, risk_summary

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.92rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;
text-align:left}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.lvl{font-weight:700;padding:.1rem .5rem;border-radius:.3rem;color:#fff}.high{background:#c0392b}
.medium{background:#d68910}.low{background:#1e8449}.unmeasured{background:#7f8c8d}.meta{color:#666;font-size:.9rem}
figure{display:inline-block;margin:.6rem;vertical-align:top;max-width:520px}figure img{max-width:100%;
border:1px solid #ddd}figcaption{font-size:.85rem;color:#444}
"""


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _fmt(v: Any) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, float):
        return f"{v:.3f}"
    return _esc(v)


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], cls: str = "") -> str:
    """An HTML table; numbers right-aligned and rounded to 3 decimals."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{_fmt(c)}</td>' if isinstance(c, (int, float))
                                   and not isinstance(c, bool) else f"<td>{_fmt(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def embed_png(path: Path) -> str:
    """A PNG file as a data URI, so the report needs no other file and no network."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figures(out: Path, figures: dict[str, Any], section: str) -> str:
    items = []
    for name, fig in figures.items():
        fig = fig if isinstance(fig, dict) else {"path": fig}
        sec = fig.get("section") or name.split("/", 1)[0]
        path = out / fig["path"]
        if sec != section or not path.is_file():
            continue
        caption = fig.get("caption") or name
        items.append(f'<figure><img alt="{_esc(caption)}" src="{embed_png(path)}">'
                     f"<figcaption>{_esc(caption)}</figcaption></figure>")
    return "".join(items)


def _section(out: Path, figures: dict, key: str, title: str, body: str) -> str:
    figs = _figures(out, figures, key)
    if not body and not figs:
        return ""
    return f'<section id="{key}"><h2>{_esc(title)}</h2>{body}{figs}</section>'


def _shares(d: dict | None) -> str:
    return ", ".join(f"{_esc(k)} {v:.3f}" for k, v in (d or {}).items() if v is not None)


def _model_body(m: dict) -> str:
    t = m["model"]["test"]
    rows = [["held-out accuracy", t["accuracy"]], ["held-out balanced accuracy", t.get("balanced_accuracy")],
            ["held-out images", t["n"]], ["held-out patients", ", ".join(t.get("groups") or []) or "n/a"],
            ["recall per class", _shares(t["per_class_recall"])],
            ["share of predictions per class", _shares(t.get("prediction_share"))],
            ["share of labels per class", _shares(t.get("label_share"))], ["parameters", m["model"]["params"]]]
    ev = (m.get("evaluation") or {}).get("eval_set")
    if ev:
        rows.append(["images attacked (per class)", f"{ev['n']} ({_shares(ev['per_class'])})".replace(".000", "")])
    sanity = m["model"].get("sanity_checks")
    if sanity:
        rows.append(["sanity checks", _sanity_text(sanity)])
    return table(["measure", "value"], rows)


def _sanity_text(sanity: dict | None) -> str:
    """'passed (n checks)' or the failed checks, each with its value against its reference."""
    if not sanity:
        return "not run"
    checks = sanity["checks"]
    if not sanity["failed"]:
        return f"passed ({len(checks)} checks)"
    def num(v) -> str:  # NaN is stored as null in metrics.json
        return "n/a" if v is None or v != v else f"{v:.2f}"

    return "FAILED " + "; ".join(f"{k}: {num(checks[k]['value'])} vs {num(checks[k]['reference'])}"
                                 + (f" ({num(checks[k]['unbounded_success'])} at eps 1)"
                                    if checks[k].get("unbounded_success") is not None else "")
                                 for k in sanity["failed"])


def _attacks_body(m: dict) -> str:
    rows = [[r["attack"], r["backend"], eps_label(r["eps"]), _params_text(r.get("params")),
             r["success_rate"], r["success_rate_on_correct"], r.get("median_linf_success"),
             r.get("median_l2_success")] for r in m.get("attacks", [])]
    return table(["attack", "backend", "eps", "parameters", "success rate", "success on correctly classified",
                  "median Linf", "median L2"], rows) if rows else ""


def _params_text(params: dict | None) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in (params or {}).items())


def _defenses_body(m: dict) -> str:
    rows = m.get("defense_summary", [])
    if not rows:
        return ""
    body = table(["defense", "balanced accuracy", "accuracy", "degenerate", "keeps val. balanced accuracy (0.05)",
                  "worst-case attack success (adaptive included)", "95 % interval", "worst-case attack",
                  "worst case without the adaptive attacks", "attacks run", "white-box success",
                  "transfer success",
                  "known adversarials no longer adversarial", "same, balanced over classes", "median minimal eps",
                  "sanity checks"],
                 [[r["defense"], r.get("balanced_accuracy"), r.get("clean_accuracy"),
                   "YES: " + "; ".join(r["degenerate_reasons"]) if r.get("degenerate") else "no",
                   {True: "yes", False: "NO", None: None}[r.get("keeps_val_balanced_accuracy")],
                   r.get("worst_case_success"), _interval(r.get("worst_case_ci")), r.get("worst_case_attack"),
                   r.get("non_adaptive_worst_case_success"), r.get("attacks_run"), r.get("new_success"),
                   r.get("transfer_success"), r.get("recovered"), r.get("recovered_balanced"),
                   r.get("median_min_eps"), _sanity_text(r.get("sanity_checks"))] for r in rows])
    first = rows[0]
    per_class = _shares(first.get("n_eval_per_class")).replace(".000", "")
    return body + (f'<p class="meta">Attacks at eps {eps_label(first.get("eps"))} on {first.get("n_eval")} held-out '
                   f"images ({per_class}); accuracies on all {first.get('n_test')} held-out images (original's balanced "
                   f"accuracy {_fmt(first.get('original_balanced_accuracy'))}). "
                   + (ADAPTIVE_DEFENSES if any(r.get("adaptive") for r in rows) else
                      "Not adaptive: the adaptive battery was switched off, so these are lower bounds.") + "</p>")


ADAPTIVE_DEFENSES = (
    "Adaptive battery: PGD on the margin loss from several random starts; BPDA (the autoencoders replaced by the "
    "identity on the backward pass, so a gradient they hide or distort cannot protect them); EOT when the model "
    "answers at random; Square, a score-based attack that uses no gradient at all; and each other defense's "
    "white-box adversarials (transfer).")
ADAPTIVE_DETECTORS = (
    "Rows marked adaptive: an attacker who knows the detector and its threshold, who must fool the classifier and "
    "stay under the threshold. Detector-aware PGD follows the detector's own differentiable score (encoder "
    "disagreement) or a logistic-regression surrogate of it (relevant-neuron forest) for several weights of the "
    "detector term; the joint Square search queries the real detector. The real detector judges every candidate; "
    "per image the attacker keeps one that gets through.")


def _detectors_body(m: dict) -> str:
    rows = m.get("detector_summary", [])
    if not rows:
        return ""
    body = table(["detector", "attack", "adaptive", "AUC", "detection at 1 % FPR", "detection at 5 % FPR",
                  "adaptive detection at 5 % FPR (same eps)", "fooled unnoticed (adaptive)",
                  "FPR reached on test (5 % target)", "95 % interval", "calibration images (enough for 5 %?)",
                  "clean / adversarial test images"],
                 [[r["detector"], r["attack"], "yes" if r.get("adaptive") else "no", r.get("auc"), r.get("tpr_at_1"),
                   r.get("tpr_at_5"), r.get("tpr_at_5") if r.get("adaptive") else r.get("adaptive_tpr_at_5"),
                   _evaded(r), r.get("fpr_reached"), _interval(r.get("fpr_reached_ci")),
                   f"{r.get('n_calibration')} ({'yes' if r.get('calibration_enough') else 'no'})",
                   f"{r.get('n_clean')} / {r.get('n_adv')}"] for r in rows])
    return body + f'<p class="meta">{ADAPTIVE_DETECTORS}</p>'


def _evaded(row: dict) -> str | None:
    """Share of attacked images the adaptive attack got past the detector with a wrong answer, with its interval."""
    if not row.get("adaptive") or row.get("evasion_success") is None:
        return None
    lo, hi = row["evasion_ci"]
    return f"{row['evasion_success']:.3f} of {row['n_attacked']} ({lo:.3f}-{hi:.3f})"


def _interval(ci: list | None) -> str | None:
    return None if not ci or ci[0] is None else f"{ci[0]:.3f}-{ci[1]:.3f}"


def _rows_body(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    return table([c[1] for c in columns], [[r.get(c[0]) for c in columns] for r in rows]) if rows else ""


SECTIONS: list[tuple[str, str]] = [
    ("attacks", "Attacks"), ("defenses", "Defenses"), ("detectors", "Detectors"),
    ("prediction_similarity", "Prediction similarity (attack processes)"),
    ("feature_responses", "Feature responses"), ("relevant_neurons", "Relevant neurons"),
    ("activation_graphs", "Activation graphs"),
]


def _resumed(m: dict) -> str:
    """A note that the run was resumed from a checkpoint, naming what came from the interrupted try."""
    stages, attacks = m.get("resumed_stages") or [], m.get("resumed_attacks") or []
    if not stages and not attacks:
        return ""
    return (f" &middot; <b>resumed</b>: stages {_esc(', '.join(stages) or 'none')} and attacks "
            f"{_esc(', '.join(attacks) or 'none')} came from an interrupted earlier try (checkpoint)")


def render_report(metrics: dict[str, Any], figures: dict[str, Any], out: str | Path) -> Path:
    """Write out/report.html from the run's metrics and figures (paths relative to `out`)."""
    out = Path(out)
    m = metrics
    risks = risk_summary(m)
    risk_rows = [[f'<span class="lvl {r["level"]}">{r["level"]}</span>', r["threat"], r["reason"]] for r in risks]
    risk_table = ('<table class="risks"><thead><tr><th>level</th><th>threat</th><th>why</th></tr></thead><tbody>'
                  + "".join("<tr><td>" + r[0] + "</td><td>" + _esc(r[1]) + "</td><td>" + _esc(r[2])
                            + "</td></tr>" for r in risk_rows) + "</tbody></table>")
    bodies = {
        "attacks": _attacks_body(m),
        "defenses": _defenses_body(m),
        "detectors": _detectors_body(m),
        "prediction_similarity": _rows_body([m["ps_summary"]] if m.get("ps_summary") else [], [
            ("detected_share", "attack processes detected"), ("benign_flagged_share", "benign users flagged"),
            ("worst_attacker", "attacker caught least"), ("worst_detected_share", "its processes detected"),
            ("worst_workload", "benign workload flagged most"), ("worst_workload_flagged_share", "its users flagged"),
            ("median_queries_to_alarm", "median queries to first alarm"),
            ("success_flip_off", "attack success, flip off"), ("success_flip_on", "attack success, flip on")]),
        "activation_graphs": _rows_body((m.get("activation_graphs") or {}).get("table", []), [
            ("model", "model"), ("layer", "layer"), ("units", "units"), ("active_clean", "active, clean"),
            ("active_adv", "active, adversarial"), ("jaccard_clean_adv", "top-k overlap clean/adv"),
            ("shift_clean_adv", "shift clean->adv"), ("jaccard_vs_original", "top-k overlap vs original"),
            ("shift_vs_original", "shift vs original")]),
    }
    sections = "".join(_section(out, figures, key, title, bodies.get(key, "")) for key, title in SECTIONS)
    doc = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>advkeras assessment: {_esc(m['data']['name'])}</title><style>{_CSS}</style></head><body>
<header><h1>Adversarial risk assessment</h1>
<p class="meta">data <b>{_esc(m['data']['name'])}</b> ({m['data']['n']} images) &middot; model
<b>{_esc(m['model']['name'])}</b> &middot; seed {m['seed']} &middot; advkeras {_esc(m['advkeras'])},
TensorFlow {_esc(m['tensorflow'])} &middot; command <code>{_esc(m['command'])}</code>{_resumed(m)}</p></header>
<section id="risk"><h2>Risk summary</h2>{risk_table}
<p class="meta">Rules, as applied:</p><ul class="meta">{"".join(f"<li>{_esc(r)}</li>" for r in RULES)}</ul></section>
<section id="model"><h2>Model</h2>{_model_body(m)}</section>
{sections}
</body></html>"""
    path = out / "report.html"
    path.write_text(doc)
    return path
