"""Build the embedded data samples in advkeras/samples/ from the real data in ../shared/data.

Run once by the maintainers: `python scripts/build_samples.py --src ../shared/data --seed 0`.
The package itself never reads ../shared at run time.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from advkeras.data.images import list_images, pad_to, read_image
from advkeras.data.idc import IDC_SIZE

# (patient, class) -> number of patches drawn. Chosen so that four patients carry both classes
# (a patient-wise split can then give every split both classes) and the classes are balanced.
IDC_PLAN = {
    ("8863", 0): 260, ("8863", 1): 200,
    ("8864", 0): 260, ("8864", 1): 260,
    ("8867", 0): 260, ("8867", 1): 150,
    ("8975", 0): 50, ("8975", 1): 200,
    ("8913", 0): 200,
    ("8917", 1): 60, ("8950", 1): 60, ("8957", 1): 60, ("9022", 1): 60, ("8980", 1): 60,
}


def build_idc(src: Path, out: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    xs, ys, patients, files = [], [], [], []
    padded = 0
    for (patient, label), n in IDC_PLAN.items():
        pool = list_images(src / patient / str(label))
        for i in np.sort(rng.choice(len(pool), min(n, len(pool)), replace=False)):
            img = read_image(pool[i])
            if img.shape[:2] != IDC_SIZE:
                img, padded = pad_to(img, IDC_SIZE), padded + 1
            xs.append(img)
            ys.append(label)
            patients.append(patient)
            files.append(pool[i].name)
    np.savez_compressed(out / "idc_sample.npz", x=np.stack(xs), y=np.array(ys, dtype=np.uint8),
                        patient=np.array(patients), filename=np.array(files))
    print(f"idc: {len(xs)} patches ({np.bincount(ys).tolist()} per class), {padded} padded, "
          f"{(out / 'idc_sample.npz').stat().st_size / 1e6:.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(__file__).resolve().parents[1] / "advkeras" / "samples"
    (out / "mnist").mkdir(parents=True, exist_ok=True)
    build_idc(args.src / "idc", out, args.seed)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copyfile(args.src / "mnist" / name, out / "mnist" / name)
    print("mnist: copied the 10k test set IDX files")


if __name__ == "__main__":
    main()
