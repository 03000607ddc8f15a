"""Activation graphs of the embedded IDC model and its defended versions (docs/results/activation_graphs.md).

    python scripts/activation_graphs_results.py --seed 0

Trains vgg_mini on the embedded IDC sample (patient-wise split, seed), builds adversarial training,
middle autoencoder, encoder and initial autoencoder with the assessment's default settings, adds
prediction similarity, and compares the dense part of every model on FGSM/BIM/PGD adversarials made on
the original model. Writes figures under docs/results/figures/activation_graphs/ and the numbers to
docs/results/activation_graphs.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from advkeras.assess.stage_activation_graphs import _similarity_classifier
from advkeras.assess.stage_defenses import settings
from advkeras.defenses.build import build_defense
from advkeras.evaluation.activation_graphs import compare_defense_activations
from advkeras.models import fit_on_dataset, split_dataset
from advkeras.data import load_sample
from advkeras.runs import write_json

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-images", type=int, default=150)
    ap.add_argument("--eps", type=float, default=4 / 255)
    args = ap.parse_args()
    start = time.perf_counter()
    ds = load_sample("idc")
    model, metrics = fit_on_dataset(ds, seed=args.seed)
    train, val, test = split_dataset(ds, args.seed)
    params = settings({})["params"]
    defended, middle = {}, None
    for name in ("adversarial-training", "middle-ae", "encoder", "initial-ae"):
        kw = dict(params.get(name, {}))
        if name == "encoder":
            kw["middle"] = middle
        result = build_defense(name, model, train, val, seed=args.seed, **kw)
        middle = result if name == "middle-ae" else middle
        defended[name] = result.model
    defended["prediction-similarity"] = _similarity_classifier(model)
    test = test.subset(slice(0, args.n_images))
    out = ROOT / "docs" / "results" / "figures" / "activation_graphs"
    rows, figures = compare_defense_activations(model, defended, test.x, test.y, out, eps=args.eps, seed=args.seed)
    write_json(ROOT / "docs" / "results" / "activation_graphs.json",
               {"command": f"python scripts/activation_graphs_results.py --seed {args.seed}", "seed": args.seed,
                "eps": args.eps, "n_images": len(test), "held_out_accuracy": metrics["test"]["accuracy"],
                "figures": {k: str(v.relative_to(ROOT)) for k, v in figures.items()}, "rows": rows,
                "seconds": time.perf_counter() - start})
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
