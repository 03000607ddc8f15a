"""How far the index store's views move under free transforms, and how far apart neighbouring patches are.

For 300 random patches of the embedded IDC sample (seed), each transform is applied once and the best cosine
between the patch's identity view and any view of the transformed copy is recorded (what a lookup can find);
the same for the nearest neighbouring patch on the slide and a random patch of the same patient. Writes
docs/results/canonical_views.json.

    .venv/bin/python scripts/canonical_views_check.py --seed 0
"""
from __future__ import annotations

import argparse
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from advkeras.data import load_sample  # noqa: E402
from advkeras.defenses.prediction_similarity import canonical_views  # noqa: E402
from advkeras.runs import write_json  # noqa: E402


def orientations(x: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(4):
        r = np.rot90(x, k, axes=(1, 2))
        out += [r, r[:, :, ::-1]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--out", default="docs/results/canonical_views.json")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    d = load_sample("idc")
    pos = np.array([[int(m.group(1)), int(m.group(2))]
                    for m in (re.search(r"_x(\d+)_y(\d+)", str(f)) for f in d.meta["files"])])
    idx = rng.choice(len(d), args.n, replace=False)
    a = d.x[idx]
    n = len(a)

    def shift(x, s):
        p = np.pad(x, ((0, 0), (s, s), (s, s), (0, 0)), mode="reflect")
        out = np.empty_like(x)
        for i in range(len(x)):
            dy, dx = rng.integers(0, 2 * s + 1, 2)
            out[i] = p[i, dy:dy + x.shape[1], dx:dx + x.shape[2]]
        return out

    def crop(x, f=0.9):
        c = int(x.shape[1] * f)
        o = rng.integers(0, x.shape[1] - c + 1, 2)
        return tf.image.resize(x[:, o[0]:o[0] + c, o[1]:o[1] + c], x.shape[1:3]).numpy()

    def neighbour(i):
        same = np.flatnonzero(d.groups == d.groups[i])
        same = same[same != i]
        return same[np.argmin(np.abs(pos[same] - pos[i]).max(1))]

    one_of_8 = np.stack([orientations(a[i:i + 1])[rng.integers(1, 8)][0] for i in range(n)])
    pairs = {
        "sign noise 8/255 (BIM-like)": np.clip(a + 8 / 255 * rng.choice([-1, 1], a.shape), 0, 1),
        "brightness +-0.06": np.clip(a + rng.uniform(-.06, .06, (n, 1, 1, 1)), 0, 1),
        "contrast x0.8-1.2": np.clip((a - .5) * rng.uniform(.8, 1.2, (n, 1, 1, 1)) + .5, 0, 1),
        "colour +-0.06 per channel": np.clip(a + rng.uniform(-.06, .06, (n, 1, 1, 3)), 0, 1),
        "rotation/mirror (one of 7 others)": one_of_8,
        "shift up to 2 px": shift(a, 2),
        "shift up to 4 px": shift(a, 4),
        "crop 90 % and resize": crop(a),
        "noise +-16/255": np.clip(a + rng.uniform(-16 / 255, 16 / 255, a.shape), 0, 1),
        "nearest neighbouring patch": d.x[[neighbour(i) for i in idx]],
        "random patch of the same patient": d.x[[rng.choice(np.flatnonzero(d.groups == d.groups[i])) for i in idx]],
    }
    ident = canonical_views(a).numpy()[:, 0]
    rows = {}
    for name, b in pairs.items():
        cos = np.einsum("nd,nvd->nv", ident, canonical_views(b.astype(np.float32)).numpy()).max(1)
        rows[name] = {"median": float(np.median(cos)), "p10": float(np.quantile(cos, .1)),
                      "p90": float(np.quantile(cos, .9)), "share_within_0.1": float((1 - cos < 0.1).mean())}
        print(f"{name:38s} cosine median {rows[name]['median']:.3f}  p10 {rows[name]['p10']:.3f}  "
              f"p90 {rows[name]['p90']:.3f}  within distance 0.1: {rows[name]['share_within_0.1']:.2f}")
    write_json(args.out, {"command": "python " + " ".join(sys.argv), "seed": args.seed, "n": n,
                          "views": {"size": 16, "max_shift": 2, "shift_step": 1, "orientations": 8}, "rows": rows})


if __name__ == "__main__":
    main()
