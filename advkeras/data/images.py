"""Reading single image files into float32 [0, 1] channels-last arrays."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from advkeras.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def read_image(path: Path, mode: str = "RGB") -> np.ndarray:
    """Read one image as uint8 HxWxC; raise DataError naming the file when it is not a readable image."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(
            f"{path} is not a readable image ({exc.__class__.__name__}: {exc}). "
            "Remove or replace the file, or move it out of the data folder."
        ) from exc
    return arr if arr.ndim == 3 else arr[..., None]


def pad_to(img: np.ndarray, size: tuple[int, int], fill: int = 255) -> np.ndarray:
    """Pad an image at the bottom/right to `size`; IDC slide-edge patches are cut at the slide border,
    so white (background) padding at that side is what the slide would show."""
    h, w = img.shape[:2]
    th, tw = size
    if h > th or w > tw:
        raise DataError(f"image of size {h}x{w} is larger than the expected {th}x{tw}; resize it first.")
    out = np.full((th, tw, img.shape[2]), fill, dtype=img.dtype)
    out[:h, :w] = img
    return out


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]."""
    return (np.asarray(images, dtype=np.float32) / 255.0).astype(np.float32)


def list_images(folder: Path) -> list[Path]:
    """Files under `folder` (non-recursive), sorted; non-image suffixes are kept so they fail loudly."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
