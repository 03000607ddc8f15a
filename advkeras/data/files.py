"""Images that stay on disk: a file index that decodes only the rows asked for.

A folder of 277,524 IDC patches is 8.3 GB as float32 but about 0.1 GB as an index of paths. `ImageFiles`
stands where a `Dataset` holds its image array: indexing it (``x[i]``, ``x[a:b]``, ``x[idx]``) decodes just
those files, `select` narrows the index without decoding anything, and `decoder` gives the `tf.data` map that
streams them.
Code that walks a Dataset batch by batch (training, prediction, evaluation) therefore runs in memory bounded
by the batch, whatever the number of images; code that needs all of them at once calls `np.asarray(x)`.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from advkeras.data.images import pad_to, read_image, to_float
from advkeras.errors import DataError

log = logging.getLogger(__name__)

DECODE_LOG_SIZE = 20_000  # materialising more than this many images at once is logged: it is rarely meant


class ImageFiles:
    """An N x H x W x C float32 [0, 1] image array backed by N files of one size (smaller ones padded with
    white at the bottom/right when `pad`, as IDC slide-edge patches are)."""

    ndim = 4
    dtype = np.dtype(np.float32)

    def __init__(self, paths: Sequence[str], image_shape: Sequence[int], *, pad: bool = False):
        self.paths = np.asarray(paths, dtype=str)
        self.image_shape = tuple(int(d) for d in image_shape)
        if len(self.image_shape) != 3 or self.image_shape[-1] not in (1, 3):
            raise DataError(f"image_shape must be (height, width, 1 or 3), got {self.image_shape}.")
        self.pad = bool(pad)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.image_shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFiles(n={len(self)}, image_shape={self.image_shape}, pad={self.pad})"

    def select(self, index) -> "ImageFiles":
        """The rows `index` (integer indices, a boolean mask or a slice) as another index; nothing is read."""
        return ImageFiles(self.paths[index], self.image_shape, pad=self.pad)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self._read(str(self.paths[index]))
        return self.decode(self.paths[index])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # copy: numpy 2's protocol; always a new array
        if len(self) > DECODE_LOG_SIZE:
            log.info("decoding %d images into memory (%.1f GB)", len(self), self.size * 4 / 1e9)
        out = self.decode(self.paths, progress=len(self) > DECODE_LOG_SIZE)
        return out if dtype is None else out.astype(dtype)

    def decode(self, paths: np.ndarray, *, progress: bool = False) -> np.ndarray:
        """Read `paths` into one float32 array."""
        out = np.empty((len(paths), *self.image_shape), dtype=np.uint8)
        for i, p in enumerate(tqdm(paths, desc="decoding images", disable=not progress)):
            out[i] = self._read_uint8(str(p))
        return to_float(out)

    def _read(self, path: str) -> np.ndarray:
        return to_float(self._read_uint8(path))

    def _read_uint8(self, path: str) -> np.ndarray:
        img = read_image(path, "RGB" if self.image_shape[-1] == 3 else "L")
        if img.shape == self.image_shape:
            return img
        if self.pad and img.shape[2] == self.image_shape[2]:
            return pad_to(img, self.image_shape[:2])
        raise DataError(f"{path} is {img.shape[1]}x{img.shape[0]}x{img.shape[2]} but the data set's images are "
                        f"{self.image_shape[1]}x{self.image_shape[0]}x{self.image_shape[2]}; resize it or remove it.")

    def decoder(self):
        """A tf function: path -> float32 image of `image_shape`, the same pixels as indexing gives."""
        h, w, c = self.image_shape
        pad = self.pad

        def decode(path: tf.Tensor) -> tf.Tensor:
            img = tf.io.decode_image(tf.io.read_file(path), channels=c, expand_animations=False)
            if pad:  # white padding at the bottom/right: invert, zero-pad, invert back
                img = 255 - tf.image.pad_to_bounding_box(255 - img, 0, 0, h, w)
            img = tf.ensure_shape(img, (h, w, c))
            return tf.cast(img, tf.float32) / 255.0

        return decode


def is_lazy(x) -> bool:
    """Whether `x` is an on-disk image index rather than an array in memory."""
    return isinstance(x, ImageFiles)
