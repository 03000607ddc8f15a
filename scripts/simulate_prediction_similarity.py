"""Full query-traffic simulation of prediction similarity on the embedded IDC held-out patients.

Trains (or loads) a vgg_mini classifier, calibrates the distance threshold on benign users of the
validation patients (target false-alarm rate per user), then replays benign users and attack processes
(BIM, PGD, Boundary, HopSkipJump, and BIM with per-query noise and shifts) through the defended model,
with action flag (answers unchanged) and flip (alarmed queries answered with another class). A second
experiment runs one attacker who uses a new user id for every call, against scope="user" and
scope="global". Writes OUT/prediction_similarity.json and OUT/tables.md.

    .venv/bin/python scripts/simulate_prediction_similarity.py --seed 0 --out runs/ps_simulation
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from advkeras.data import load_sample, split_by_group  # noqa: E402
from advkeras.evaluation.traffic import evaluate_prediction_similarity  # noqa: E402
from advkeras.models import (build_classifier, evaluate_classifier, load_model, save_model,  # noqa: E402
                             train_classifier)
from advkeras.runs import prepare_out_dir, write_json  # noqa: E402

EPS = 8 / 255
ATTACKS = [
    {"name": "bim", "backend": "foolbox", "eps": EPS},
    {"name": "pgd", "backend": "foolbox", "eps": EPS, "params": {"steps": 20, "rel_stepsize": 0.1}},
    {"name": "boundary", "targeted": True, "params": {"steps": 200}},
    {"name": "hopskipjump", "targeted": True, "params": {"steps": 5, "initial_gradient_eval_steps": 50}},
    {"name": "bim", "backend": "foolbox", "eps": EPS, "label": "bim+jitter",
     "jitter": {"noise": 16 / 255, "max_shift": 2}},
]
MANY_IDS = [{"name": "bim", "backend": "foolbox", "eps": EPS, "label": "bim, new id per call", "rotate_ids": True}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/ps_simulation")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--model", default=None, help="a .keras classifier; default: train vgg_mini")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--benign-users", type=int, default=100)
    ap.add_argument("--queries-per-user", type=int, default=20)
    ap.add_argument("--processes", type=int, default=50, help="attack processes per attack")
    ap.add_argument("--target-fpr", type=float, default=0.01)
    ap.add_argument("--metric", default="mse")
    ap.add_argument("--representation", default="thumbnail")
    args = ap.parse_args()
    out = prepare_out_dir(args.out, force=args.force)
    start = time.perf_counter()
    train, val, test = split_by_group(load_sample("idc"), seed=args.seed)
    if args.model:
        clf = load_model(args.model)
    else:
        clf = build_classifier("vgg_mini", train.input_shape, 2, seed=args.seed)
        train_classifier(clf, train, val, epochs=args.epochs, augment=True, seed=args.seed)
        save_model(clf, out / "model.keras")
    layer = {"metric": args.metric, "representation": args.representation, "n_slots": 1024, "history": 32}
    main_run = evaluate_prediction_similarity(
        clf, val, test, layer=layer, target_fpr=args.target_fpr, n_benign=args.benign_users,
        queries_per_user=args.queries_per_user, attacks=ATTACKS, processes=args.processes, seed=args.seed)
    scopes = {}
    for scope, history in (("user", 32), ("global", 1024)):
        scopes[scope] = evaluate_prediction_similarity(
            clf, val, test, layer={**layer, "scope": scope, "history": history}, target_fpr=args.target_fpr,
            n_benign=15, queries_per_user=args.queries_per_user, attacks=MANY_IDS, processes=args.processes,
            actions=("flag",), disjoint_users=True, seed=args.seed)
    result = {"command": "python " + " ".join(sys.argv), "seed": args.seed,
              "classifier": {"name": "vgg_mini", "test": evaluate_classifier(clf, test)},
              "main": main_run, "many_ids": scopes, "seconds": time.perf_counter() - start}
    write_json(out / "prediction_similarity.json", result)
    (out / "tables.md").write_text(tables(result))
    print(tables(result))


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def tables(r: dict) -> str:
    m = r["main"]
    flag, flip = m["runs"]["flag"], m["runs"]["flip"]
    lines = [f"Command: `{r['command']}` (seed {r['seed']}); classifier held-out accuracy "
             f"{r['classifier']['test']['accuracy']:.3f}.", "",
             f"Threshold {m['calibration']['threshold']:.3g} ({m['layer']}) calibrated on "
             f"{m['calibration']['n_users']} benign users ({m['calibration']['n_queries']} queries) of the "
             f"validation patients, target {_pct(m['target_fpr'])} of users.", "",
             "| attack | processes | detected (flip off) | median queries to first alarm | median queries per "
             "process | detected (flip on) | true success, flip off | true success, flip on | success the "
             "attacker sees, flip on |", "|---|---|---|---|---|---|---|---|---|"]
    for a, b in zip(flag["attacks"], flip["attacks"]):
        lines.append(f"| {a['attack']} | {a['processes']} | {_pct(a['detection_rate'])} | "
                     f"{a['median_queries_to_first_alarm']} | {a['median_queries']:.0f} | "
                     f"{_pct(b['detection_rate'])} | "
                     f"{_pct(a['success_true'])} | {_pct(b['success_true'])} | {_pct(b['success_seen_by_attacker'])} |")
    s = m["summary"]["flag"]
    lines += ["", f"All attack processes (flip off): {s['detected']}/{s['processes']} detected "
              f"({_pct(s['detection_rate'])}), median {s['median_queries_to_first_alarm']} queries to the first "
              f"alarm; benign users flagged: {flag['benign']['users_flagged']}/{flag['benign']['users']} "
              f"({_pct(flag['benign']['user_fpr'])}), benign queries alarmed {_pct(flag['benign']['query_fpr'])}.",
              "", "| scope | attacker | processes | detected | benign users flagged |", "|---|---|---|---|---|"]
    for scope, run in r["many_ids"].items():
        rr = run["runs"]["flag"]
        for a in rr["attacks"]:
            lines.append(f"| {scope} | {a['attack']} | {a['processes']} | {_pct(a['detection_rate'])} | "
                         f"{rr['benign']['users_flagged']}/{rr['benign']['users']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
