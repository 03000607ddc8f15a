"""mu-Lasso convergence on real neuron descriptors: the exact working-set solver (default) against
projected gradient alone (`working_set=False`, the previous solver) at the 500-iteration cap that
`RelevantNeuronSets` allows, per class: iterations and relative duality gap.

LeNet trained on MNIST as in scripts/relevant_neurons_table.py (seed 0, 4 epochs); descriptors of the
correctly classified validation digits (clean) and of their successful FGSM adversarials (eps 0.2),
at the sample sizes of the results tables: 296 clean / 218 and 54 adversarial (the FGSM and CW
fitting sets of docs/results/relevant_neurons.md; 54 < 226 neurons) and all of them; mu 10, 20, 100.

    python scripts/mu_lasso_convergence.py --seed 0
writes docs/benchmarks/mu_lasso_convergence.json.
    python scripts/mu_lasso_convergence.py --seed 0 --attack cw
fits instead the CW-L2 pairs of the paper-setting run (targeted at (y + 1) mod 10, clean side = the
originals of the successful adversarials, all sizes as they come) and writes
docs/benchmarks/mu_lasso_convergence_cw.json.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from advkeras.data import load_sample, split_random  # noqa: E402
from advkeras.detectors.relevant_neurons import NeuronDescriptors, mu_lasso  # noqa: E402
from advkeras.detectors.relevant_neurons.experiment import AttackSpec, attack_part  # noqa: E402
from advkeras.detectors.relevant_neurons.neuron_sets import one_hot  # noqa: E402
from advkeras.models import build_classifier, train_classifier  # noqa: E402
from advkeras.runs import write_json  # noqa: E402


def descriptors(seed: int, attack: str = "fgsm") -> dict[str, np.ndarray]:
    train, val, _ = split_random(load_sample("mnist"), seed=seed)
    model = build_classifier("lenet", (28, 28, 1), 10, seed=seed)
    train_classifier(model, train, val, epochs=4, seed=seed)
    spec = AttackSpec("fgsm", 0.2) if attack == "fgsm" else AttackSpec("cw", targeted=True)
    ds = attack_part(model, val, spec, seed, balanced=attack != "fgsm")
    nd = NeuronDescriptors(model, append_prediction=True).fit()
    return {"clean": nd.transform(ds.clean), "adv": nd.transform(ds.adv)}


def fit(D: np.ndarray, mu: float, working_set: bool) -> dict:
    start = time.perf_counter()
    r = mu_lasso(D[:, :-1].T, one_hot(D[:, -1].astype(int), 10), mu, tol=1e-4, max_iter=500,
                 working_set=working_set)
    return {"seconds": time.perf_counter() - start, "converged": r.converged, "n_iter": r.n_iter,
            "relative_gap": r.relative_gap, "objective": r.objective}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attack", choices=["fgsm", "cw"], default="fgsm")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    desc = descriptors(args.seed, args.attack)
    rng = np.random.default_rng(args.seed)
    cases = []
    sizes = (("clean", 296), ("adv", 218), ("adv", 54), ("clean", None), ("adv", None)) if args.attack == "fgsm" \
        else (("clean", None), ("adv", None))
    for side, n in sizes:
        D = desc[side]
        D = D[np.sort(rng.permutation(len(D))[:n])] if n else D
        for mu in (10.0, 20.0, 100.0):
            new, old = fit(D, mu, True), fit(D, mu, False)
            rel = (new["objective"] - old["objective"]) / np.maximum(old["objective"], 1e-12)
            cases.append({"descriptors": side, "n": len(D), "mu": mu, "working_set": new, "spg_only": old,
                          "objective_relative_difference_new_minus_old": rel})
            print(f"{side:5s} n={len(D):4d} mu={mu:5g}: working set {new['seconds']:.2f} s, max it "
                  f"{new['n_iter'].max()}, max gap {new['relative_gap'].max():.1e} | SPG only {old['seconds']:.2f} s, "
                  f"converged {old['converged']}, max gap {old['relative_gap'].max():.1e}")
    out = args.out or f"docs/benchmarks/mu_lasso_convergence{'' if args.attack == 'fgsm' else '_cw'}.json"
    cmd = f"python scripts/mu_lasso_convergence.py --seed {args.seed}" + ("" if args.attack == "fgsm" else " --attack cw")
    write_json(out, {"command": cmd, "seed": args.seed, "attack": args.attack,
                          "neurons": int(desc["clean"].shape[1] - 1), "tolerance": 1e-4, "max_iter": 500,
                          "cases": cases})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
