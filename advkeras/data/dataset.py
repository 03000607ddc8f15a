"""A small container for images, labels and groups (patients) that every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from advkeras.data.files import ImageFiles, is_lazy
from advkeras.errors import DataError


_PER_ROW = ("files",)  # meta entries with one value per image: subsets take their rows


@dataclass
class Dataset:
    """Images float32 [0, 1] NxHxWxC, integer labels, optional group ids (e.g. patients).

    `x` is an array in memory or an `ImageFiles` index of files on disk, decoded batch by batch where the
    data is used (see `advkeras.data.files`); `in_memory()` decodes a (small) one."""

    x: np.ndarray | ImageFiles
    y: np.ndarray
    groups: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    name: str = ""
    n_padded: int = 0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} images but {len(self.y)} labels; they must match one to one.")
        if self.groups is not None and len(self.groups) != len(self.y):
            raise DataError(f"{len(self.groups)} group ids for {len(self.y)} images; they must match.")
        if not self.class_names:
            self.class_names = tuple(str(c) for c in range(int(self.y.max()) + 1 if len(self.y) else 0))

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, index: np.ndarray) -> "Dataset":
        """Rows `index` (a boolean mask or integer indices) as a new Dataset."""
        g = None if self.groups is None else self.groups[index]
        meta = {k: np.asarray(v)[index] if k in _PER_ROW and len(v) == len(self) else v for k, v in self.meta.items()}
        x = self.x.select(index) if is_lazy(self.x) else self.x[index]
        return Dataset(x, self.y[index], g, self.class_names, self.name, meta=meta)

    @property
    def lazy(self) -> bool:
        """Whether the images stay on disk until used."""
        return is_lazy(self.x)

    def in_memory(self) -> "Dataset":
        """This Dataset with its images decoded into one array (itself when they already are)."""
        if not self.lazy:
            return self
        return Dataset(np.asarray(self.x), self.y, self.groups, self.class_names, self.name, self.n_padded,
                       dict(self.meta))

    def __repr__(self) -> str:
        counts = np.bincount(self.y, minlength=self.n_classes).tolist() if len(self.y) else []
        n_groups = 0 if self.groups is None else len(np.unique(self.groups))
        return (f"Dataset(name={self.name!r}, n={len(self)}, shape={self.input_shape}, "
                f"class_counts={counts}, groups={n_groups}{', on disk' if self.lazy else ''})")
