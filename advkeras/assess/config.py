"""The assessment config: a YAML file merged over the packaged default."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from advkeras.errors import InputError


def default_config() -> dict[str, Any]:
    return yaml.safe_load((resources.files("advkeras") / "configs" / "default.yaml").read_text())


def load_config(path: str | Path | None = None, **overrides: Any) -> dict[str, Any]:
    """The default config, updated by the YAML file at `path`, then by non-None `overrides`."""
    config = default_config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"config file {path} does not exist.")
        try:
            user = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(user, dict):
            raise InputError(f"{path} must hold a mapping of settings (key: value), not {type(user).__name__}.")
        unknown = set(user) - set(config)
        if unknown:
            raise InputError(f"{path}: unknown setting(s) {sorted(unknown)}; known: {sorted(config)}.")
        config.update(user)
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config
