"""Trade-off of the cross-user scope against its hardest attacker: detection vs benign users flagged.

The attacker that blinds every query and sends each under a new id is seen only by the cross-user scope of the
index store, which alarms after `global_min_matches` near-duplicates from other ids within `global_threshold`.
For each setting this runs that attacker (BIM 8/255 through the defended model) and the five benign workloads
on the same held-out IDC patients as scripts/simulate_prediction_similarity.py, thresholds calibrated the same
way, and writes OUT/tradeoff.json and OUT/tradeoff.md.

    .venv/bin/python scripts/ps_tradeoff.py --model runs/ps_adaptive/model.keras --out runs/ps_tradeoff
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from advkeras.data import load_sample, split_by_group  # noqa: E402
from advkeras.evaluation.attackers import BLINDING  # noqa: E402
from advkeras.evaluation.traffic import evaluate_prediction_similarity  # noqa: E402
from advkeras.evaluation.workloads import WORKLOADS  # noqa: E402
from advkeras.models import load_model  # noqa: E402
from advkeras.runs import prepare_out_dir, write_json  # noqa: E402

SETTINGS = [{"global_min_matches": 8}, {"global_min_matches": 5}, {"global_min_matches": 3},
            {"global_min_matches": 3, "max_distance": 0.2}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/ps_tradeoff")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--idc-root", default="../shared/data/idc")
    ap.add_argument("--benign-users", type=int, default=16)
    ap.add_argument("--queries-per-user", type=int, default=16)
    ap.add_argument("--processes", type=int, default=20)
    args = ap.parse_args()
    out = prepare_out_dir(args.out, force=args.force)
    from advkeras.data.idc import load_idc

    sample = load_sample("idc")
    _, val, _ = split_by_group(sample, seed=args.seed)
    full = load_idc(args.idc_root, progress=False)
    held = full.subset(~np.isin(full.groups, np.unique(sample.groups)))
    clf = load_model(args.model)
    attack = {"name": "bim", "backend": "foolbox", "eps": 8 / 255, "label": "blind: all + new id per query",
              "strategy": {"blind": list(BLINDING), "new_id_every": 1}}
    rows, start = [], time.perf_counter()
    for setting in SETTINGS:
        r = evaluate_prediction_similarity(clf, val, held, layer=setting, n_benign=args.benign_users,
                                           queries_per_user=args.queries_per_user, attacks=[attack],
                                           processes=args.processes, actions=("flag",), workloads=WORKLOADS,
                                           seed=args.seed, progress=False)
        run = r["runs"]["flag"]
        a = run["attacks"][0]
        w = run["benign"]["workloads"]
        rows.append({"setting": setting, "calibration": r["calibration"], "detected": a["detected"],
                     "processes": a["processes"], "median_queries_to_first_alarm": a["median_queries_to_first_alarm"],
                     "benign_users_flagged": run["benign"]["users_flagged"], "benign_users": run["benign"]["users"],
                     "by_workload": {k: [v["users_flagged"], v["users"]] for k, v in w.items()}})
        print(rows[-1], flush=True)
    result = {"command": "python " + " ".join(sys.argv), "seed": args.seed, "attack": attack, "rows": rows,
              "seconds": time.perf_counter() - start}
    write_json(out / "tradeoff.json", result)
    lines = [f"Command: `{result['command']}`", "",
             "| setting | cross-user threshold | detected | median queries to alarm | benign users flagged | by workload |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['calibration']['global_threshold']:.3g} | {r['detected']}/{r['processes']} | "
                     f"{r['median_queries_to_first_alarm']} | {r['benign_users_flagged']}/{r['benign_users']} | "
                     + ", ".join(f"{k} {a}/{b}" for k, (a, b) in r["by_workload"].items()) + " |")
    (out / "tradeoff.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
