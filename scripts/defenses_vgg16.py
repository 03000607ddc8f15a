"""Table 1 and new adversarials for VGG16 (weights=None, trained here) at 50x50 on the embedded IDC sample.

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 nice -n 10 python scripts/defenses_vgg16.py

VGG16 is about 7x the compute of vgg_mini; on 2 shared CPU cores (no GPU in the run recorded in
docs/results/defenses.md) the defaults are cut down to fit: 400 training images, 3 epochs, one seed,
adversarial-training data made with 3-step BIM/PGD on a third of the images each, 64 Table-1 images,
16 images attacked afresh with 5-step PGD, 1 retraining epoch, 3 autoencoder epochs.
Every option of scripts/defenses_table.py can still be passed (e.g. --seeds 0 1 2 on a GPU).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defenses_table import main  # noqa: E402

VGG16_DEFAULTS = dict(backbone="vgg16", seeds=[0], model_epochs=3, model_lr=1e-4, n_train=400, n_eval=64,
                      n_new=16, pgd_steps=5, train_attack_steps=3, retrain_epochs=1, ae_epochs=3, tag="idc_vgg16")

if __name__ == "__main__":
    main(**VGG16_DEFAULTS)
