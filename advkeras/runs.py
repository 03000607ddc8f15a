"""Output folders of runs: created fresh, never silently overwritten."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np


def prepare_out_dir(out: str | Path, *, force: bool = False, confirm: Callable[[str], bool] | None = None,
                    inputs: Iterable[str | Path | None] = ()) -> Path:
    """Create `out`; if it exists and is not empty, replace it only with `force` or a yes from `confirm`.

    Raises FileExistsError otherwise, so a user's earlier results are never lost by surprise. `inputs`
    (model files, data folders, configs the run will read) must not lie inside an `out` that would be
    replaced: that would delete them before they are read.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        inside = [str(p) for p in inputs if p is not None and Path(p).exists() and _within(Path(p), out)]
        if inside:
            raise FileExistsError(f"{', '.join(inside)} lies inside {out}, which this run would replace; "
                                  "choose another --out or move the file first.")
        question = f"{out} already holds results. Overwrite it?"
        if not (force or (confirm is not None and confirm(question))):
            raise FileExistsError(f"{out} already exists and is not empty; pass --force (force=True) to "
                                  "replace it, or choose another --out.")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def jsonable(obj: Any, *, keep_nonfinite: bool = False) -> Any:
    """`obj` with numpy values, tuples and paths as JSON types; NaN and inf become None unless `keep_nonfinite`
    (a checkpoint keeps them, so a resumed run sees what an unbroken one saw)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v, keep_nonfinite=keep_nonfinite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, keep_nonfinite=keep_nonfinite) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), keep_nonfinite=keep_nonfinite)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not keep_nonfinite and not np.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, data: Any, *, keep_nonfinite: bool = False) -> Path:
    """Write `data` as indented JSON, converting numpy values (NaN/inf become null unless `keep_nonfinite`). The
    file is written under a temporary name and renamed, so a reader (or a killed writer) never leaves half a
    file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(jsonable(data, keep_nonfinite=keep_nonfinite), indent=2) + "\n")
    os.replace(tmp, path)
    return path
