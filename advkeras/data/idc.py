"""The Kaggle breast-histopathology (IDC) layout: ``<root>/<patient>/<0|1>/*.png``, 50x50 RGB patches."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from advkeras.data.dataset import Dataset
from advkeras.data.files import ImageFiles
from advkeras.errors import DataError
from advkeras.data.images import list_images, pad_to, read_image, to_float

log = logging.getLogger(__name__)

IDC_SIZE = (50, 50)
IDC_CLASSES = ("no IDC", "IDC")


def load_idc(root: str | Path, *, max_per_class_patient: int | None = None, seed: int = 0,
             progress: bool = True, lazy: bool = False) -> Dataset:
    """Load IDC patches from the Kaggle layout.

    `lazy=True` reads no image: the Dataset's images are an `ImageFiles` index decoded where they are used
    (training and prediction stream them batch by batch), so a folder of any size fits in memory; padding
    then happens on the fly and `n_padded` is not counted.

    Slide-edge patches smaller than 50x50 are padded with white at the bottom/right (the side
    the slide ended on) so every image is 50x50x3; how many were padded is logged.
    `max_per_class_patient` draws a seeded random subset of each patient's class folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"IDC folder {root} does not exist. Pass the folder that holds the "
                        "<patient>/<0|1>/*.png tree (the Kaggle breast-histopathology layout).")
    rng = np.random.default_rng(seed)
    entries: list[tuple[Path, int, str]] = []
    for patient_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for label in (0, 1):
            class_dir = patient_dir / str(label)
            if not class_dir.is_dir():
                continue
            files = list_images(class_dir)
            if max_per_class_patient is not None and len(files) > max_per_class_patient:
                idx = np.sort(rng.choice(len(files), max_per_class_patient, replace=False))
                files = [files[i] for i in idx]
            entries += [(f, label, patient_dir.name) for f in files]
    if not entries:
        raise DataError(f"no IDC images found under {root}: expected <patient>/<0|1>/*.png "
                        "sub-folders (e.g. 8863/1/8863_idx5_x1001_y1501_class1.png).")
    labels = np.array([e[1] for e in entries], dtype=np.int64)
    groups = np.array([e[2] for e in entries])
    meta = {"files": np.array([e[0].name for e in entries])}
    if lazy:
        return Dataset(ImageFiles([str(e[0]) for e in entries], (*IDC_SIZE, 3), pad=True), labels, groups=groups,
                       class_names=IDC_CLASSES, name="idc", meta=meta)
    images = np.empty((len(entries), *IDC_SIZE, 3), dtype=np.uint8)
    padded = 0
    for i, (path, _, _) in enumerate(tqdm(entries, desc="loading IDC", disable=not progress)):
        img = read_image(path)
        if img.shape[:2] != IDC_SIZE:
            img = pad_to(img, IDC_SIZE)
            padded += 1
        images[i] = img
    if padded:
        log.info("IDC: padded %d of %d slide-edge patches smaller than 50x50", padded, len(entries))
    return Dataset(to_float(images), labels, groups=groups, class_names=IDC_CLASSES, name="idc",
                   n_padded=padded, meta=meta)
