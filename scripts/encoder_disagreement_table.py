"""Detection rate and false-positive rate of the encoder disagreement detector on the IDC sample.

    python scripts/encoder_disagreement_table.py --model runs/defenses_idc_vgg_mini/original.keras

The original classifier (trained by scripts/defenses_table.py, seed 0) and, per seed, an encoder
defense (middle autoencoder + new head, built with that seed) run side by side on the held-out
patients. Clean held-out images give the false-positive rate; the initial adversarials (FGSM, BIM,
PGD at --eps on the original model, seed 0, only those that fool it) give the detection rate. The
graded score (total-variation distance between the two softmax outputs) gives an AUC and the
detection rate at 5 % FPR with the threshold set on clean validation images.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the original .keras classifier")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eps", type=float, default=4 / 255)
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "encoder_disagreement_idc_vgg_mini.json"))
    args = p.parse_args(argv)

    from advkeras.attacks import iterative_params
    from advkeras.data import load_sample, split_by_group
    from advkeras.defenses import encoder_defense, middle_autoencoder
    from advkeras.detectors import EncoderDisagreementDetector
    from advkeras.evaluation.detection import binary_detection_metrics, detection_metrics
    from advkeras.evaluation.robustness import initial_adversarials, mean_std
    from advkeras.models import load_model
    from advkeras.runs import write_json

    start = time.time()
    train, val, test = split_by_group(load_sample("idc"), seed=0)
    model = load_model(args.model)
    adv = initial_adversarials(model, test.x, test.y, ("fgsm", "bim", "pgd"), eps=args.eps, seed=0,
                               attack_params={"pgd": iterative_params(args.pgd_steps)})
    per_seed = []
    for seed in args.seeds:
        middle = middle_autoencoder(model, train, val, epochs=40, seed=seed)
        enc = encoder_defense(model, train, val, middle=middle, epochs=60, seed=seed)
        det = EncoderDisagreementDetector(model, enc.model).fit(val.x, val.y)
        clean_flags, clean_scores = det.predict(test.x).astype(bool), det.decision_function(test.x)
        calib = det.decision_function(val.x)
        row = {"val_flag_rate": det.clean_flag_rate_, "attacks": {}}
        for name, res in adv.items():
            x_adv = res.clipped[res.fooled]
            b = binary_detection_metrics(clean_flags, det.predict(x_adv).astype(bool))
            g = detection_metrics(clean_scores, det.decision_function(x_adv), calibration_scores=calib)
            row["attacks"][name] = {"tpr": b["tpr"], "fpr": b["fpr"], "n_adv": b["n_adv"], "auc": g["auc"],
                                    "tpr_at_5": g["at_fpr"]["0.05"]["tpr"], "fpr_at_5": g["at_fpr"]["0.05"]["fpr"]}
        per_seed.append(row)
        print(f"seed {seed}: {row} ({time.time() - start:.0f} s)", flush=True)
    result = {"command": "python scripts/encoder_disagreement_table.py " + " ".join(sys.argv[1:]),
              "args": vars(args), "n_clean": int(len(test)), "per_seed": per_seed, "summary": mean_std(per_seed),
              "seconds": time.time() - start}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
