"""MNIST in its original IDX format (optionally gzipped)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from advkeras.data.dataset import Dataset
from advkeras.errors import DataError
from advkeras.data.images import to_float

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into a numpy array, checking the header against the size."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file {path} does not exist.")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} could not be read as an IDX file ({exc}); re-download it.") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number); expected MNIST "
                        "files such as t10k-images-idx3-ubyte.gz.")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)) * dtype.itemsize:
        raise DataError(f"{path} is truncated or corrupt: header says {dims}, body has {len(body)} bytes.")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def load_mnist_idx(images_path: str | Path, labels_path: str | Path) -> Dataset:
    """Load an MNIST images/labels IDX pair as 28x28x1 float32 [0, 1] images and integer labels."""
    images = read_idx(images_path)
    labels = read_idx(labels_path).astype(np.int64)
    if images.ndim != 3:
        raise DataError(f"{images_path} holds an array of shape {images.shape}; expected N x 28 x 28 "
                        "images (did you swap the images and labels files?).")
    return Dataset(to_float(images[..., None]), labels, class_names=tuple(str(d) for d in range(10)),
                   name="mnist")
