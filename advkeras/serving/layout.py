"""TF Serving's model base path layout: <base>/<name>/<version>/, versions are positive integers."""
from __future__ import annotations

import re
from pathlib import Path

from advkeras.errors import InputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def versions(base: str | Path, name: str) -> list[int]:
    """Existing version numbers of model `name`, ascending."""
    folder = Path(base) / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def next_version_dir(base: str | Path, name: str) -> Path:
    """The folder for a new version: one above the highest existing, never an existing one."""
    if not _NAME.match(name):
        raise InputError(f"model name {name!r} must be letters, digits, '_', '.' or '-' (it becomes a URL path).")
    existing = versions(base, name)
    return Path(base) / name / str((existing[-1] if existing else 0) + 1)
