"""Real data samples embedded in the package, loadable with no path and no download."""
from __future__ import annotations

from importlib import resources

import numpy as np

from advkeras.data.dataset import Dataset
from advkeras.errors import DataError
from advkeras.data.images import to_float
from advkeras.data.idc import IDC_CLASSES
from advkeras.data.mnist import load_mnist_idx

SAMPLES = ("idc", "mnist")


def load_sample(name: str) -> Dataset:
    """Load an embedded sample.

    - ``"idc"``: about 2,000 IDC patches (both classes, several patients) drawn from the Kaggle
      breast-histopathology data; groups are patient ids, so split with `split_by_group`.
    - ``"mnist"``: the 10,000-image MNIST test set (the original IDX files); split it with
      `split_random` for experiments, since the training set is not embedded.
    """
    root = resources.files("advkeras") / "samples"
    if name == "idc":
        with resources.as_file(root / "idc_sample.npz") as path, np.load(path) as npz:
            return Dataset(to_float(npz["x"]), npz["y"].astype(np.int64), groups=npz["patient"].astype(str),
                           class_names=IDC_CLASSES, name="idc",
                           meta={"files": npz["filename"].astype(str)})
    if name == "mnist":
        with resources.as_file(root / "mnist") as folder:
            return load_mnist_idx(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    raise DataError(f"unknown sample {name!r}; embedded samples are: {', '.join(SAMPLES)}.")
