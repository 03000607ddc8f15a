"""Turn a dataset argument (an embedded sample name or a path) into a Dataset."""
from __future__ import annotations

from pathlib import Path

from advkeras.data.dataset import Dataset
from advkeras.errors import DataError
from advkeras.data.folder import load_image_folder
from advkeras.data.idc import load_idc
from advkeras.data.mnist import load_mnist_idx
from advkeras.data.samples import SAMPLES, load_sample


def load_dataset(spec: str | Path, *, lazy: bool = False) -> Dataset:
    """``"idc"``/``"mnist"`` load embedded samples; a path loads an IDC tree (``<patient>/<0|1>/``),
    an MNIST folder (holding ``*images-idx3-ubyte*`` and ``*labels-idx1-ubyte*``), or an image folder.

    `lazy=True` keeps the images of an IDC tree or image folder on disk (see `advkeras.data.files`);
    embedded samples and MNIST IDX files are small and always loaded."""
    if str(spec) in SAMPLES:
        return load_sample(str(spec))
    root = Path(spec)
    if not root.exists():
        raise DataError(f"dataset {spec!r} is neither an embedded sample ({', '.join(SAMPLES)}) "
                        "nor an existing folder.")
    if not root.is_dir():
        raise DataError(f"{root} is a file; pass the folder that holds the dataset.")
    images = sorted(root.glob("*images-idx3-ubyte*"))
    labels = sorted(root.glob("*labels-idx1-ubyte*"))
    if images and labels:
        return load_mnist_idx(images[0], labels[0])
    subdirs = [p for p in root.iterdir() if p.is_dir()]
    if subdirs and all((p / "0").is_dir() or (p / "1").is_dir() for p in subdirs):
        return load_idc(root, lazy=lazy)
    return load_image_folder(root, lazy=lazy)
