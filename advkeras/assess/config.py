"""The assessment config: the packaged YAML (the one source of defaults), deep-merged with the user's."""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from advkeras.errors import InputError

# Mappings whose keys the user names (defense names, layer arguments): merged, but not checked against the defaults.
FREE_FORM = ("defenses.params", "defenses.new_attack_params", "prediction_similarity.layer")


def default_config() -> dict[str, Any]:
    return yaml.safe_load((resources.files("advkeras") / "configs" / "default.yaml").read_text())


def merge_settings(base: Mapping[str, Any], user: Mapping[str, Any] | None, path: str = "") -> dict[str, Any]:
    """`base` updated by `user` at every depth (a nested mapping keeps the keys the user did not give);
    a key that `base` does not know is refused with its full path (e.g. `train.epoch`). Lists and other
    values are replaced whole."""
    out = copy.deepcopy(dict(base))
    for key, value in (user or {}).items():
        where = f"{path}.{key}" if path else str(key)
        if key not in out and path not in FREE_FORM:
            known = ", ".join(sorted(map(str, out))) or "none"
            raise InputError(f"unknown setting {where!r}; known at this level: {known}.")
        if isinstance(out.get(key), Mapping) and isinstance(value, Mapping):
            out[key] = merge_settings(out[key], value, where)
        else:
            out[key] = copy.deepcopy(value)
    return out


def section(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Settings of one stage: the packaged defaults of section `name` merged with `config[name]`."""
    return merge_settings(default_config()[name], config.get(name) or {}, name)


def load_config(path: str | Path | dict | None = None, **overrides: Any) -> dict[str, Any]:
    """The default config, deep-merged with the YAML file at `path` (or a dict), then with non-None `overrides`."""
    user: Any = {}
    if isinstance(path, Mapping):
        user = path
    elif path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"config file {path} does not exist.")
        try:
            user = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(user, dict):
            raise InputError(f"{path} must hold a mapping of settings (key: value), not {type(user).__name__}.")
    config = merge_settings(default_config(), user)
    return merge_settings(config, {k: v for k, v in overrides.items() if v is not None})
