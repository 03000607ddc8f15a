"""Prediction similarity against attackers who work around it, on IDC patients outside the embedded sample.

Trains (or loads) a vgg_mini classifier on the embedded IDC sample, calibrates each store's thresholds on the
benign workloads (`advkeras.evaluation.workloads`) of the sample's validation patients (target share of users
flagged), then replays benign users of every workload and attack processes of every strategy
(`advkeras.evaluation.attackers`: plain, history flushing, slow drip, many ids, each blinding transform and
all of them, and the OARS-style adaptive attacker) on the held-out patients: by default the patients of the
full Kaggle layout (`--idc-root`) that the embedded sample does not contain. Every attack process runs BIM
(8/255) through the defended model with its own user id, so every model call is a query; plain FGSM (8/255)
processes run too. Both stores run on the same traffic: the index store (default) and the ring store (the
earlier default). `--setting paper` runs instead the defenses paper's setting: SSIM on full-size images,
each query compared with every earlier query of its user (one ring of `--capacity` queries, more than the
run sends; checked), flushing with 32 cover queries only (320 would cost the defender hours here, see
`--flush`). Both settings also time one query against a user's history of each `--bench-history` size.
Writes OUT/prediction_similarity.json and OUT/tables.md.

    .venv/bin/python scripts/simulate_prediction_similarity.py --seed 0 --out runs/ps_adaptive
    .venv/bin/python scripts/simulate_prediction_similarity.py --seed 0 --out runs/ps_paper --setting paper
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from advkeras.data import load_sample, split_by_group  # noqa: E402
from advkeras.evaluation.attackers import BLINDING  # noqa: E402
from advkeras.evaluation.traffic import evaluate_prediction_similarity  # noqa: E402
from advkeras.evaluation.workloads import WORKLOADS  # noqa: E402
from advkeras.models import build_classifier, evaluate_classifier, load_model, save_model, train_classifier  # noqa: E402
from advkeras.runs import prepare_out_dir, write_json  # noqa: E402

EPS = 8 / 255
RING_HISTORY = 32


# The defenses paper's setting (Section 4.3, Table 1's 99.5 %): SSIM on the full-size image, compared with every
# earlier query of the user: one ring (n_slots=1) whose capacity exceeds the run, each query compared only with
# its own user's entries (scope "user"), an alarm on one earlier image within the threshold.
PAPER_LAYER = {"store": "ring", "representation": "full", "metric": "ssim", "n_slots": 1, "min_matches": 1}


def attackers(flushes: list[int]) -> list[dict]:
    """BIM through the defended model under each strategy, and plain FGSM, labelled for the tables."""
    def bim(label, **strategy):
        spec = {"name": "bim", "backend": "foolbox", "eps": EPS, "label": label}
        return {**spec, "strategy": strategy} if strategy else spec

    return [bim("plain"), {"name": "fgsm", "backend": "foolbox", "eps": EPS, "label": "fgsm (plain)"},
            *[bim(f"flush {k}", flush=k) for k in flushes],
            bim("slow drip 100", drip=100),
            bim("new id per query", new_id_every=1), bim("new id per 4 queries", new_id_every=4),
            *[bim(f"blind: {t}", blind=[t]) for t in BLINDING],
            bim("blind: all", blind=list(BLINDING)),
            bim("blind: all + new id per query", blind=list(BLINDING), new_id_every=1),
            bim("adaptive (OARS-style)", adaptive=True)]


def layers(args) -> dict[str, dict]:
    """Store label -> layer settings of the chosen setting."""
    if args.setting == "paper":
        return {"paper": {**PAPER_LAYER, "history": args.capacity}}
    return {s: {"store": s, **({"history": RING_HISTORY, "n_slots": 1024} if s == "ring" else {})}
            for s in args.stores}


def costs(clf, layer: dict, run: dict, images: np.ndarray, sizes: list[int]) -> dict:
    """What the setting costs: state bytes per stored query, whether the run overflowed the store, benign
    per-query latency in the run (median of query() end to end, classifier included, first call excluded),
    and for ring stores the latency of one query against a user's history of each size (median of 5; the ring
    filled directly)."""
    from advkeras.defenses.prediction_similarity import build_defended_model, similarity_layer

    if layer.get("n_slots") == 1 and sizes:  # one large ring: bench on one just above the largest history (memory;
        layer = {**layer, "history": min(layer["history"], max(sizes) + 8)}  # the per-entry bytes are the same)
    defended = build_defended_model(clf, **layer)
    sim = similarity_layer(defended)
    entries = sim.capacity if layer["store"] == "index" else sim.n_rings * sim.history
    state = sum(w.numpy().nbytes if w.dtype == "string" else w.shape.num_elements() * w.dtype.size
                for w in sim.weights)
    benign = run["runs"]["flag"]["benign"]
    capacity = run["layer"].get("history", entries) if sim.n_rings == 1 else entries
    out = {"capacity": int(capacity), "bytes_per_stored_query": state / entries,
           "queries_total": run["runs"]["flag"]["queries_total"],
           # one store for all (index, or one ring): did the run send more than it holds? (per-user rings: n/a)
           "overflowed": (run["runs"]["flag"]["queries_total"] > capacity
                          if layer["store"] == "index" or sim.n_rings == 1 else None),
           "benign_ms_per_query": benign["ms_per_query_median"]}
    if layer["store"] == "ring":
        out["ms_per_query_by_user_history"] = history_latency(defended, images, sizes)
    return out


def history_latency(defended, images: np.ndarray, sizes: list[int], reps: int = 5) -> dict[str, float]:
    """Median ms of one query of a user whose ring already holds h of its queries (h capped at the ring)."""
    import tensorflow as tf

    from advkeras.defenses.prediction_similarity import query, similarity_layer
    from advkeras.defenses.prediction_similarity.metrics import represent

    sim = similarity_layer(defended)
    user = "bench-user"
    finger = int(tf.strings.to_hash_bucket_fast([user], np.iinfo(np.int64).max - 1)[0]) + 1
    ring = finger % sim.n_slots if sim.scope == "user" else 0
    out = {}
    for h in sizes:
        h = min(h, sim.history)
        sim.reset_state(keep_threshold=True)
        x = images[np.arange(h) % len(images)]
        reps_ = tf.reshape(represent(x, sim.representation, sim.thumbnail_size, sim.spectrum_size), [h, -1])
        idx = tf.constant([[ring, j] for j in range(h)], tf.int64)
        sim.thumbs.scatter_nd_update(idx, reps_)
        sim.owner.scatter_nd_update(idx, tf.fill([h], tf.constant(finger, tf.int64)))
        sim.ring_writes.scatter_nd_update([[ring]], [h])
        times = []
        for _ in range(reps + 1):  # the first call traces; each call adds one entry to the user's history
            t = time.perf_counter()
            query(defended, images[-1:], user)
            times.append(time.perf_counter() - t)
        out[str(h)] = 1e3 * float(np.median(times[1:]))
    sim.reset_state(keep_threshold=True)
    return out


def held_out(args, sample_patients) -> "Dataset":
    from advkeras.data.idc import load_idc

    full = load_idc(args.idc_root, progress=False)
    keep = ~np.isin(full.groups, list(sample_patients))
    if not keep.any():
        raise SystemExit(f"{args.idc_root} holds no patient outside the embedded sample.")
    return full.subset(keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/ps_adaptive")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--model", default=None, help="a .keras classifier; default: train vgg_mini")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--idc-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "idc"),
                    help="Kaggle IDC layout; its patients outside the embedded sample are the held-out set "
                         "('' = the embedded sample's test patients)")
    ap.add_argument("--benign-users", type=int, default=16, help="per workload")
    ap.add_argument("--queries-per-user", type=int, default=16)
    ap.add_argument("--processes", type=int, default=20, help="attack processes per attacker")
    ap.add_argument("--flush", type=int, default=None,
                    help=f"cover queries per attack query of the second flushing attacker (the first sends "
                         f"{RING_HISTORY}); default {10 * RING_HISTORY}, none with --setting paper (its cost per "
                         "query grows with the user's history: quadratic in the cover queries)")
    ap.add_argument("--target-fpr", type=float, default=0.01)
    ap.add_argument("--stores", nargs="+", default=["index", "ring"], help="with --setting default")
    ap.add_argument("--setting", choices=("default", "paper"), default="default",
                    help="paper: the defenses paper's setting (full-size SSIM, every earlier query of the user)")
    ap.add_argument("--capacity", type=int, default=45_000,
                    help="--setting paper: queries the one ring holds (must exceed the run's; checked)")
    ap.add_argument("--bench-history", type=int, nargs="*", default=[16, 128, 1024, 4096],
                    help="time one query against a user history of these sizes (ring stores)")
    args = ap.parse_args()
    flush = (0 if args.setting == "paper" else 10 * RING_HISTORY) if args.flush is None else args.flush
    flushes = [RING_HISTORY] + ([flush] if flush else [])
    out = prepare_out_dir(args.out, force=args.force)
    start = time.perf_counter()
    sample = load_sample("idc")
    train, val, test = split_by_group(sample, seed=args.seed)
    evaluation = held_out(args, np.unique(sample.groups)) if args.idc_root else test
    if args.model:
        clf = load_model(args.model)
    else:
        clf = build_classifier("vgg_mini", train.input_shape, 2, seed=args.seed)
        train_classifier(clf, train, val, epochs=args.epochs, augment=True, seed=args.seed)
        save_model(clf, out / "model.keras")
    runs = {}
    for store, layer in layers(args).items():
        began = time.perf_counter()
        runs[store] = evaluate_prediction_similarity(
            clf, val, evaluation, layer=layer, target_fpr=args.target_fpr, n_benign=args.benign_users,
            queries_per_user=args.queries_per_user, attacks=attackers(flushes), processes=args.processes,
            actions=("flag",), workloads=WORKLOADS, seed=args.seed,
            # the ring stores calibrated on the traffic they were designed for (on all workloads, the identical
            # re-sends set their threshold to 0 and they never alarm)
            calibration_workloads=("browse",) if layer["store"] == "ring" else None)
        write_json(out / f"traffic_{store}.json", runs[store])  # kept should the cost measurement fail
        runs[store]["cost"] = costs(clf, layer, runs[store], evaluation.x, args.bench_history)
        runs[store]["seconds"] = time.perf_counter() - began
        print(f"{store}: {time.perf_counter() - start:.0f} s", flush=True)
    result = {"command": "python " + " ".join(sys.argv), "seed": args.seed, "setting": args.setting,
              "evaluation": {"patients": sorted(map(str, np.unique(evaluation.groups))), "n": len(evaluation),
                             "labels": np.bincount(evaluation.y, minlength=2).tolist()},
              "classifier": {"name": "vgg_mini", "held_out": evaluate_classifier(clf, evaluation),
                             "test": evaluate_classifier(clf, test)},
              "runs": runs, "seconds": time.perf_counter() - start}
    write_json(out / "prediction_similarity.json", result)
    (out / "tables.md").write_text(tables(result))
    print(tables(result))


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _lower95(k: int, n: int) -> float:
    """One-sided 95 % Clopper-Pearson lower bound of a rate k/n."""
    from scipy.stats import beta

    return 0.0 if k == 0 else float(beta.ppf(0.05, k, n - k + 1))


def tables(r: dict) -> str:
    stores = list(r["runs"])
    lines = [f"Command: `{r['command']}` (seed {r['seed']}); held-out patients {', '.join(r['evaluation']['patients'])} "
             f"({r['evaluation']['n']} patches, labels {r['evaluation']['labels']}); classifier accuracy there "
             f"{r['classifier']['held_out']['accuracy']:.3f}.", ""]
    for s in stores:
        c = r["runs"][s]["calibration"]
        lines.append(f"- {s} store: threshold {c['threshold']:.4g}"
                     + ("" if c.get("global_threshold") is None else f", cross-user {c['global_threshold']:.4g}")
                     + f", calibrated on {c['n_users']} benign users ({c['n_queries']} queries; workloads "
                       f"{', '.join(r['runs'][s]['calibration_workloads'])}), target {_pct(r['runs'][s]['target_fpr'])}.")
    head = " | ".join(f"{s}: detected (95 % lower bound) | {s}: median queries to alarm" for s in stores)
    lines += ["", f"| attacker | processes | {head} | attack success | cover queries per process | ids per process |",
              "|" + "---|" * (5 + 2 * len(stores))]
    rows = {s: r["runs"][s]["runs"]["flag"]["attacks"] for s in stores}
    for i, a in enumerate(rows[stores[0]]):
        cells = []
        for s in stores:
            b = rows[s][i]
            cells += [f"{b['detected']}/{b['processes']} ({_pct(_lower95(b['detected'], b['processes']))})",
                      f"{b['median_queries_to_first_alarm']}"]
        lines.append(f"| {a['attack']} | {a['processes']} | {' | '.join(cells)} | {_pct(a['success_true'])} | "
                     f"{a.get('median_cover_queries', 0):.0f} | {a.get('median_ids', 1):.0f} |")
    lines += ["", "| benign workload | " + " | ".join(f"{s}: users flagged" for s in stores) + " |",
              "|" + "---|" * (1 + len(stores))]
    kinds = r["runs"][stores[0]]["runs"]["flag"]["benign"]["workloads"]
    for kind in kinds:
        cells = [f"{w['users_flagged']}/{w['users']} ({_pct(w['user_fpr'])})"
                 for w in (r["runs"][s]["runs"]["flag"]["benign"]["workloads"][kind] for s in stores)]
        lines.append(f"| {kind} | {' | '.join(cells)} |")
    lines += ["", "| store | state bytes per stored query | capacity (queries) | queries in the run | overflowed | "
              "benign query, end to end, median (ms) | one query vs a user history of h (ms) |",
              "|---|---|---|---|---|---|---|"]
    for s in stores:
        c = r["runs"][s].get("cost")
        if c:
            by_h = ", ".join(f"h={h}: {v:.1f}" for h, v in c.get("ms_per_query_by_user_history", {}).items())
            lines.append(f"| {s} | {c['bytes_per_stored_query']:.0f} | {c['capacity']} | {c['queries_total']} | "
                         f"{'-' if c['overflowed'] is None else c['overflowed']} | {c['benign_ms_per_query']:.1f} | "
                         f"{by_h or '-'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
