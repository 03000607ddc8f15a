"""Image-folder datasets: ``<root>/<class name>/<image files>`` (e.g. the CIFAR-10 JPEG test set)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from advkeras.data.dataset import Dataset
from advkeras.data.files import ImageFiles
from advkeras.errors import DataError
from advkeras.data.images import list_images, read_image, to_float


def load_image_folder(root: str | Path, *, mode: str = "RGB", max_per_class: int | None = None,
                      seed: int = 0, progress: bool = True, lazy: bool = False) -> Dataset:
    """Load every image under ``root/<class>/``; classes are the sub-folder names in sorted order.

    All images must share one size; `mode` is a PIL mode ("RGB" or "L"). `lazy=True` checks every file's
    size from its header and keeps the images on disk (an `ImageFiles` index, decoded where used).
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
    labels = np.array([e[1] for e in entries], dtype=np.int64)
    names = tuple(d.name for d in class_dirs)
    if lazy:
        _check_sizes([e[0] for e in entries], first.shape, progress)
        return Dataset(ImageFiles([str(e[0]) for e in entries], first.shape), labels, class_names=names,
                       name=root.name)
    images = np.empty((len(entries), *first.shape), dtype=np.uint8)
    for i, (path, _) in enumerate(tqdm(entries, desc=f"loading {root.name}", disable=not progress)):
        img = first if i == 0 else read_image(path, mode)
        if img.shape != first.shape:
            raise DataError(f"{path} is {img.shape[1]}x{img.shape[0]} but {entries[0][0].name} is "
                            f"{first.shape[1]}x{first.shape[0]}; resize all images to one size.")
        images[i] = img
    return Dataset(to_float(images), labels, class_names=names, name=root.name)


def _check_sizes(paths: list[Path], shape: tuple[int, ...], progress: bool) -> None:
    """Every image's size from its header (no pixel is decoded), so a streamed run cannot fail mid-way."""
    for path in tqdm(paths, desc="checking image sizes", disable=not progress):
        try:
            with Image.open(path) as im:
                size = im.size
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{path} is not a readable image ({exc}); remove or replace it.") from exc
        if size != (shape[1], shape[0]):
            raise DataError(f"{path} is {size[0]}x{size[1]} but {paths[0].name} is {shape[1]}x{shape[0]}; "
                            "resize all images to one size.")
