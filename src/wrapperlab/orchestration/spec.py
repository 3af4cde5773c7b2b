"""Experiment specs: a YAML file names a paper experiment's grid and analyses; it expands into a graph.

A spec (``experiments/specs/<name>.yaml`` in the package, or any path) holds::

    name, kind (a setting: pcfg | tracr | stories), description
    base:      dotted overrides per stage (pretrain, finetune, reft), applied on the profile
    axes:      grid axes -> value lists (the setting's: pcfg prior, lr, c_tr; tracr lr, c_tr, noise_std; ...)
    analyses:  analysis -> the axis values it runs on (the setting's: pcfg prune, probe, reft; ...)
    profiles:  profile -> {axes: overrides of the axes, seeds: how many, base: stage overrides for it,
               analyses: entries replacing the spec's analyses of the same name}

:func:`expand` turns (spec, profile, seeds) into :class:`~wrapperlab.settings.base.Node` s in dependency order
through the spec's setting (its ``expand``): roots shared by the fine-tunings that start from them, analyses and
reFT after their fine-tuning.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from wrapperlab.errors import ConfigError
from wrapperlab.schema import Config
from wrapperlab.settings import registry
from wrapperlab.settings.base import Node

STAGES = ("pretrain", "finetune", "reft")


class AnalysisSpec(Config):
    """Where an analysis runs: the axis values it is restricted to (others: every value)."""

    when: dict[str, list[Any]] = Field(default_factory=dict)
    baselines: bool | list[Literal["scr+ft", "scr"]] = Field(
        False, description="reft: also the baselines (true: Scr.+FT and Scr.; or a list of them)")
    lrs: list[str | float] | None = Field(
        None, description="pcfg and tracr reft: reFT (and baseline) learning rates, names or numbers; each fine-tuning gets "
        "those not above its own lr (the paper's reFT lr is below the fine-tuning one). Default: the profile's "
        "reft_lr_factor x the fine-tuning lr")
    ks: list[int] | None = Field(None, description="pcfg prune: numbers of units pruned (default 0..50)")
    n_eval: int | None = Field(None, gt=0, description="pcfg prune and jailbreak: test samples per accuracy (default 1000)")
    iters: int | None = Field(None, gt=0, description="pcfg probe: training steps (default: the profile's)")
    corpora: list[Literal["twist", "mixed"]] = Field(
        ["twist"], description="stories reft: Twist-only stories (the paper) and/or a truly labelled Twist-rich mix")
    mixed_when: dict[str, list[Any]] | None = Field(
        None, description="stories reft: where the mixed corpus runs (default: wherever reft runs)")


class ProfileSpec(Config):
    """What a profile changes for this experiment: grid axes, seeds, and stage settings on top of ``base``
    (so a spec can size its own quick run without changing the shared profile every other command uses)."""

    axes: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: int = Field(3, gt=0)
    base: dict[str, dict[str, Any]] = Field(default_factory=dict)
    analyses: dict[str, AnalysisSpec] = Field(default_factory=dict)  # replace the spec's entries of these names


class Spec(Config):
    name: str
    kind: str
    description: str = ""
    program: str = Field("counter", description="tracr: the compiled program")
    base: dict[str, dict[str, Any]] = Field(default_factory=dict)
    axes: dict[str, list[Any]]
    analyses: dict[str, AnalysisSpec] = Field(default_factory=dict)
    profiles: dict[str, ProfileSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_keys(self):
        setting = registry.get(self.kind)
        allowed = setting.axes
        for where, axes in [("axes", self.axes), *((f"profiles.{p}.axes", s.axes) for p, s in self.profiles.items()),
                            *((f"analyses.{a}.when", s.when) for a, s in self.analyses.items()),
                            *((f"profiles.{p}.analyses.{a}.when", a_s.when) for p, s in self.profiles.items()
                              for a, a_s in s.analyses.items())]:
            for axis, values in axes.items():
                if axis not in allowed:
                    raise ConfigError(f"{where}.{axis}", axis, f"an axis of a {self.kind} spec: {list(allowed)}")
                if not values:
                    raise ConfigError(f"{where}.{axis}", values, "a non-empty list of values")
        for where, base in [("base", self.base), *((f"profiles.{p}.base", s.base) for p, s in self.profiles.items())]:
            for stage in base:
                if stage not in STAGES:
                    raise ConfigError(f"{where}.{stage}", stage, f"one of {list(STAGES)}")
        for where, analyses in [("analyses", self.analyses), *((f"profiles.{p}.analyses", s.analyses)
                                                                for p, s in self.profiles.items())]:
            for name in analyses:
                if name not in setting.analyses:
                    raise ConfigError(f"{where}.{name}", name, f"one of {list(setting.analyses)}")
        missing = [a for a in allowed if a not in self.axes and a not in setting.optional_axes]
        if missing:
            raise ConfigError(f"axes.{missing[0]}", None, "a list of values (every axis needs a default)")
        return self

    def _profile(self, profile: str) -> ProfileSpec:
        return self.profiles.get(profile) or ProfileSpec()

    def axes_for(self, profile: str) -> dict[str, list[Any]]:
        return {**self.axes, **self._profile(profile).axes}

    def analyses_for(self, profile: str) -> dict[str, AnalysisSpec]:
        return {**self.analyses, **self._profile(profile).analyses}

    def base_for(self, profile: str, stage: str) -> dict[str, Any]:
        """Dotted overrides of ``stage`` under ``profile``: the spec's base, then the profile's."""
        return {**self.base.get(stage, {}), **self._profile(profile).base.get(stage, {})}

    def seeds_for(self, profile: str, seeds: int | None = None) -> list[int]:
        n = seeds if seeds is not None else (self.profiles[profile].seeds if profile in self.profiles else 1)
        return list(range(n))


def shipped_specs() -> list[str]:
    folder = resources.files("wrapperlab.orchestration").joinpath("specs")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_spec(ref: str | Path) -> Spec:
    """A shipped spec by name, or a YAML file; bad content is one ConfigError naming the file and key."""
    path = Path(ref)
    if not path.suffix and str(ref) in shipped_specs():
        text = resources.files("wrapperlab.orchestration").joinpath("specs", f"{ref}.yaml").read_text()
        where = f"spec {ref}"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError("spec", str(ref), "a UTF-8 YAML file (this one is binary)") from None
        except OSError:
            raise ConfigError("spec", str(ref), f"a spec file or one of {shipped_specs()}") from None
        where = f"spec {path}"
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(where, "unparsable YAML", f"valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(where, type(raw).__name__, "a mapping with keys name, kind, axes, ...")
    try:
        return Spec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, ConfigError):
            raise ConfigError(f"{where}: {cause.field}", cause.value, cause.allowed) from None
        key = ".".join(str(p) for p in err["loc"]) or "spec"
        raise ConfigError(f"{where}: {key}", err.get("input"), err["msg"].lower()) from None


def expand(spec: Spec, profile: str, seeds: int | None = None) -> list[Node]:
    """The nodes of a reproduction in dependency order (parents before children), as the spec's setting lays them."""
    return registry.get(spec.kind).expand(spec, profile, seeds)
