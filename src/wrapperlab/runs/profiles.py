"""Profiles (named bundles of settings every setting reads its section of) and the helpers that turn a profile plus
``--set`` overrides into validated configs: one line naming the field on bad input.

Every setting builds its run configs from here, so validation and override rules are the same everywhere.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from wrapperlab.errors import ConfigError


def load_profiles() -> dict[str, Any]:
    return yaml.safe_load(resources.files("wrapperlab.runs").joinpath("profiles.yaml").read_text())


def profile(name: str) -> dict[str, Any]:
    profiles = {k: v for k, v in load_profiles().items() if isinstance(v, dict)}
    if name not in profiles:
        raise ConfigError("profile", name, f"one of {sorted(profiles)}")
    return profiles[name]


def validated(model: type[BaseModel], data: dict[str, Any], where: str = "",
              context: dict[str, Any] | None = None) -> BaseModel:
    """Build a pydantic model, turning its first complaint into a one-line :class:`ConfigError`. ``context``: what
    its validators read (a setting's ``lr_names``: training/config.py, ``resolve_lr``)."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in (where, *err["loc"]) if p != "")
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, ConfigError):
            raise ConfigError(f"{where}.{cause.field}" if where else cause.field, cause.value, cause.allowed)
        raise ConfigError(field or model.__name__, err.get("input"), err["msg"].lower())


#: model settings the data fix (their vocabulary, their sequence length): a profile or --set may not name them
DERIVED_MODEL_KEYS = ("vocab_size", "n_ctx")


def model_shape(settings: dict[str, Any], vocab_size: int, n_ctx: int, where: str = "model"):
    """The full model shape (a ``GPTConfig``) from a ``model`` section — a preset plus overrides — and what the data
    fix. Naming a derived key is refused rather than silently replaced; bad values name ``where.<field>``."""
    from wrapperlab.models.gpt import PRESETS, GPTConfig

    if settings is not None and not isinstance(settings, dict):
        raise ConfigError(where, settings, "a mapping of model settings (preset, d_model, n_layers, ...)")
    settings = dict(settings or {})
    for key in DERIVED_MODEL_KEYS:
        if key in settings:
            raise ConfigError(f"{where}.{key}", settings[key],
                              "no value: the data fix it (vocabulary, sequence length)")
    preset = settings.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"{where}.preset", preset, f"one of {sorted(PRESETS)}")
    shape = {**PRESETS.get(preset, {}), **settings, "vocab_size": vocab_size, "n_ctx": n_ctx}
    return validated(GPTConfig, shape, where)


def apply_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 1e-3}`` -> nested update of a copy of ``base``; unknown sections are errors."""
    out = yaml.safe_load(yaml.safe_dump(base))  # deep copy of plain data
    for dotted, value in overrides.items():
        keys = dotted.split(".")
        if not all(keys):
            raise ConfigError(dotted or "--set", value, "section.key=value (e.g. train.lr=1e-3)")
        node = out
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                raise ConfigError(dotted, value, f"a key under one of {sorted(k for k, v in out.items() if isinstance(v, dict))}")
            node = node[key]
        if isinstance(node.get(keys[-1]), dict) and not isinstance(value, dict):
            raise ConfigError(dotted, value, f"a key under this section ({dotted}.<key>=value), not a value for all of it")
        node[keys[-1]] = value
    return out
