"""How the code size of the middle autoencoder changes the middle-AE and encoder defenses.

    python scripts/middle_ae_code_size.py --model runs/defenses_idc_vgg_mini/original.keras --seed 0

The model is the original classifier that `scripts/defenses_table.py` saves (it is trained there).
Same split, eps and initial adversarials (FGSM, BIM, PGD made on the original) as Table 1; for each
code size and seed: middle autoencoder + encoder head trained, share of the initial adversarials
recovered, clean held-out accuracy, the autoencoder's validation reconstruction error, and the
success of new PGD adversarials made through each defended model. Writes
docs/results/middle_ae_code_size.json and a figure.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defenses_table import ATTACKS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="original classifier (.keras), e.g. from defenses_table.py")
    p.add_argument("--code-sizes", type=int, nargs="+", default=[2, 4, 8, 16, 64, 256])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eps", type=float, default=4 / 255)
    p.add_argument("--n-eval", type=int, default=320)
    p.add_argument("--n-new", type=int, default=64, help="held-out images attacked afresh per defended model")
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "docs" / "results"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    import numpy as np

    from advkeras.attacks import generate, iterative_params
    from advkeras.data import load_sample, split_by_group
    from advkeras.defenses import encoder_defense, middle_autoencoder
    from advkeras.evaluation.robustness import clean_accuracy, initial_adversarials, mean_std, recovery_rates
    from advkeras.models import load_model
    from advkeras.runs import write_json

    start = time.time()
    train, val, test = split_by_group(load_sample("idc"), seed=0)
    ev = test.subset(np.sort(np.random.default_rng(0).permutation(len(test))[:args.n_eval]))
    new = test.subset(np.sort(np.random.default_rng(0).permutation(len(test))[:args.n_new]))
    model = load_model(args.model)
    pgd = iterative_params(args.pgd_steps)
    rows: dict[int, list[dict]] = {c: [] for c in args.code_sizes}
    fooled: dict[int, dict[str, int]] = {}
    for seed in args.seeds:
        adv = initial_adversarials(model, ev.x, ev.y, ATTACKS, eps=args.eps, seed=seed, attack_params={"pgd": pgd})
        fooled[seed] = {a: int(r.fooled.sum()) for a, r in adv.items()}
        for code in args.code_sizes:
            middle = middle_autoencoder(model, train, val, code_size=code, seed=seed)
            encoder = encoder_defense(model, train, val, middle=middle, seed=seed)
            models = {"middle-ae": middle.model, "encoder": encoder.model}
            rec = recovery_rates(models, adv)
            acc = clean_accuracy(models, ev.x, ev.y)
            new_success = {name: generate(m, new.x, new.y, "pgd", eps=args.eps, seed=seed, progress=False,
                                          **pgd).success_rate_on_correct for name, m in models.items()}
            rows[code].append({name: {"recovered": rec[name]["all"]["recovered"], "clean_accuracy": acc[name],
                                      "new_pgd_success": new_success[name]} for name in models}
                              | {"ae_val_mse": middle.info["val_mse"]})
            print(f"seed {seed} code {code}: " + ", ".join(
                f"{n} recovered {rows[code][-1][n]['recovered']:.3f} acc {acc[n]:.3f}" for n in models)
                + f" ({time.time() - start:.0f} s)", flush=True)
    result = {"command": "python scripts/middle_ae_code_size.py " + " ".join(sys.argv[1:]), "args": vars(args),
              "original_accuracy": clean_accuracy({"original": model}, ev.x, ev.y)["original"],
              "n_fooled_per_seed": fooled,
              "by_code_size": {str(c): mean_std(r) for c, r in rows.items()}, "seconds": time.time() - start}
    out = Path(args.out)
    result["figure"] = str(plot(result, out / "figures" / "middle_ae_code_size.png").relative_to(out))
    write_json(out / "middle_ae_code_size.json", result)
    print(markdown(result))
    return result


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = [int(c) for c in result["by_code_size"]]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, style in (("middle-ae", "o-"), ("encoder", "s--")):
        for ax, key, label in ((axes[0], "recovered", "initial adversarials recovered"),
                               (axes[1], "clean_accuracy", "clean held-out accuracy")):
            m = [result["by_code_size"][str(c)][name][key]["mean"] for c in codes]
            s = [result["by_code_size"][str(c)][name][key]["std"] for c in codes]
            ax.errorbar(codes, m, yerr=s, fmt=style, capsize=3, label=name)
            ax.set(xscale="log", xlabel="code size", ylabel=label)
    axes[1].axhline(result["original_accuracy"], color="grey", lw=1, ls=":", label="original")
    axes[0].legend()
    axes[1].legend()
    fig.suptitle(f"Middle autoencoder code size (IDC, eps {result['args']['eps'] * 255:.0f}/255, "
                 f"seeds {' '.join(map(str, result['args']['seeds']))})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown(result: dict) -> str:
    lines = ["| code size | AE val MSE (unit scale) | middle-AE recovered % | middle-AE accuracy | "
             "middle-AE new PGD success | encoder recovered % | encoder accuracy | encoder new PGD success |",
             "|---" * 8 + "|"]
    for code, r in result["by_code_size"].items():
        cells = [f"{r['ae_val_mse']['mean']:.3f}"]
        for name in ("middle-ae", "encoder"):
            v = r[name]
            cells += [f"{100 * v['recovered']['mean']:.1f} ± {100 * v['recovered']['std']:.1f}",
                      f"{v['clean_accuracy']['mean']:.3f}",
                      f"{100 * v['new_pgd_success']['mean']:.1f} %"]
        lines.append(f"| {code} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
