"""Table 1 and new adversarials for VGG16 (weights=None, trained here) at 50x50 on the embedded IDC sample.

    TF_NUM_INTRAOP_THREADS=2 python scripts/defenses_vgg16.py            # trains the original, then evaluates
    python scripts/defenses_vgg16.py --model runs/defenses_idc_vgg16/original.keras   # reuse a trained original

The defaults are the setting of docs/results/defenses.md (seeds 0 1 2, all 1,510 training images, up to
20 epochs at Adam 1e-4, 320 Table-1 images, 64 attacked afresh, 20-step PGD, adversarial-training data
from 10-step BIM/PGD, 4 retraining epochs, 12 initial-autoencoder epochs): about an hour on 2 idle CPU
cores. Every option of scripts/defenses_table.py can be passed (e.g. --seeds 0 --n-eval 64 for a quick look).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defenses_table import main  # noqa: E402

VGG16_DEFAULTS = dict(backbone="vgg16", seeds=[0, 1, 2], model_epochs=20, model_lr=1e-4, n_train=0, n_eval=320,
                      n_new=64, pgd_steps=20, train_attack_steps=10, retrain_epochs=4, ae_epochs=12, tag="idc_vgg16")

if __name__ == "__main__":
    main(**VGG16_DEFAULTS)
