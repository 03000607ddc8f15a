"""Image-folder datasets: ``<root>/<class name>/<image files>`` (e.g. the CIFAR-10 JPEG test set)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from advkeras.data.dataset import Dataset
from advkeras.errors import DataError
from advkeras.data.images import list_images, read_image, to_float


def load_image_folder(root: str | Path, *, mode: str = "RGB", max_per_class: int | None = None,
                      seed: int = 0, progress: bool = True) -> Dataset:
    """Load every image under ``root/<class>/``; classes are the sub-folder names in sorted order.

    All images must share one size; `mode` is a PIL mode ("RGB" or "L").
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; expected <root>/<class>/<images>.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not class_dirs:
        raise DataError(f"{root} has no class sub-folders; expected <root>/<class>/<images>.")
    rng = np.random.default_rng(seed)
    entries: list[tuple[Path, int]] = []
    for label, d in enumerate(class_dirs):
        files = list_images(d)
        if max_per_class is not None and len(files) > max_per_class:
            files = [files[i] for i in np.sort(rng.choice(len(files), max_per_class, replace=False))]
        entries += [(f, label) for f in files]
    if not entries:
        raise DataError(f"the class folders under {root} are empty; put image files in them.")
    first = read_image(entries[0][0], mode)
    images = np.empty((len(entries), *first.shape), dtype=np.uint8)
    for i, (path, _) in enumerate(tqdm(entries, desc=f"loading {root.name}", disable=not progress)):
        img = first if i == 0 else read_image(path, mode)
        if img.shape != first.shape:
            raise DataError(f"{path} is {img.shape[1]}x{img.shape[0]} but {entries[0][0].name} is "
                            f"{first.shape[1]}x{first.shape[0]}; resize all images to one size.")
        images[i] = img
    return Dataset(to_float(images), np.array([e[1] for e in entries], dtype=np.int64),
                   class_names=tuple(d.name for d in class_dirs), name=root.name)
