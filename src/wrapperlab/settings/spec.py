"""Experiment specs as data: a spec names a setting (``kind``), a grid and the analyses run over it.

A spec (``orchestration/specs/<name>.yaml`` in the package, or any path) holds::

    name, kind (a setting), description
    base:      dotted overrides per stage (the setting's ``base_stages``), applied on the profile
    axes:      grid axes -> value lists (the setting's axes)
    analyses:  analysis -> its options (the setting's typed model per analysis; ``when``: the axis values it runs on)
    profiles:  profile -> {axes: overrides of the axes, seeds: how many, base: stage overrides for it,
               analyses: entries replacing the spec's analyses of the same name}
    ...        any other top-level key is one of the setting's spec options (Tracr: ``program``)

Why here and not in the orchestration: the settings expand specs into nodes, so the spec's shape lives beside them;
:func:`parse_spec` validates a raw mapping against the setting it is handed (:class:`Rules`: it looks nothing
up), so no setting concept is named here and no import runs upward.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from pydantic import Field, SerializeAsAny

from wrapperlab.errors import ConfigError
from wrapperlab.schema import Config


class AnalysisOptions(Config):
    """Where an analysis runs: the axis values it is restricted to (others: every value). A setting's analyses
    subclass it with their own options."""

    when: dict[str, list[Any]] = Field(default_factory=dict)


class ProfileSpec(Config):
    """What a profile changes for this experiment: grid axes, seeds, and stage settings on top of ``base``
    (so a spec can size its own quick run without changing the shared profile every other command uses)."""

    axes: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: int = Field(3, gt=0)
    base: dict[str, dict[str, Any]] = Field(default_factory=dict)
    analyses: dict[str, SerializeAsAny[AnalysisOptions]] = Field(default_factory=dict)  # replace the spec's entries


class Spec(Config):
    # the name becomes a file name in the store (reproductions/<name>-<profile>.json): no separators, no "..",
    # so a spec cannot write outside it
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    kind: str
    description: str = ""
    base: dict[str, dict[str, Any]] = Field(default_factory=dict)
    axes: dict[str, list[Any]]
    analyses: dict[str, SerializeAsAny[AnalysisOptions]] = Field(default_factory=dict)
    profiles: dict[str, ProfileSpec] = Field(default_factory=dict)
    options: SerializeAsAny[Config] | None = None  # the setting's spec options (its ``spec_options`` model)

    def _profile(self, profile: str) -> ProfileSpec:
        return self.profiles.get(profile) or ProfileSpec()

    def axes_for(self, profile: str) -> dict[str, list[Any]]:
        return {**self.axes, **self._profile(profile).axes}

    def analyses_for(self, profile: str) -> dict[str, AnalysisOptions]:
        return {**self.analyses, **self._profile(profile).analyses}

    def base_for(self, profile: str, stage: str) -> dict[str, Any]:
        """Dotted overrides of ``stage`` under ``profile``: the spec's base, then the profile's."""
        return {**self.base.get(stage, {}), **self._profile(profile).base.get(stage, {})}

    def seeds_for(self, profile: str, seeds: int | None = None) -> list[int]:
        n = seeds if seeds is not None else (self.profiles[profile].seeds if profile in self.profiles else 1)
        return list(range(n))


GENERIC_KEYS = ("name", "kind", "description", "base", "axes", "analyses", "profiles")


class Rules(Protocol):
    """What a spec is validated against (a :class:`~wrapperlab.settings.base.Setting` has all of it)."""

    name: str
    axes: tuple[str, ...]
    optional_axes: tuple[str, ...]
    base_stages: tuple[str, ...]
    analyses: Mapping[str, type[AnalysisOptions]]
    spec_options: type[Config] | None


def _validated(model: type[Config], raw: Any, where: str) -> Any:
    from wrapperlab.runs.profiles import validated

    if not isinstance(raw, dict):
        raise ConfigError(where, raw, f"a mapping ({model.__name__})")
    return validated(model, raw, where)


def _analyses(raw: Any, setting: Rules, where: str) -> dict[str, AnalysisOptions]:
    """A spec's ``analyses`` mapping, each entry validated by the setting's options model for it."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(where, raw, "a mapping of analysis -> options")
    out = {}
    for name, options in raw.items():
        if name not in setting.analyses:
            raise ConfigError(f"{where}.{name}", name, f"one of {list(setting.analyses)}")
        out[name] = _validated(setting.analyses[name], options if options is not None else {}, f"{where}.{name}")
    return out


def parse_spec(raw: dict[str, Any], setting: Rules) -> Spec:
    """A raw spec mapping validated against ``setting`` (its axes, stages, analysis and spec options): a bad key or
    value is one :class:`ConfigError` whose field is the key's path in the spec (``analyses.prune.ks``)."""
    extra = {k: v for k, v in raw.items() if k not in GENERIC_KEYS}
    if extra and setting.spec_options is None:
        key = next(iter(extra))
        raise ConfigError(key, extra[key], f"a key of a {setting.name} spec: {list(GENERIC_KEYS)}")
    options = _validated(setting.spec_options, extra, "") if setting.spec_options is not None else None
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError("profiles", profiles, "a mapping of profile -> its entries")
    typed_profiles = {}
    for name, entry in profiles.items():
        entry = dict(entry) if isinstance(entry, dict) else entry
        if isinstance(entry, dict) and "analyses" in entry:
            entry["analyses"] = _analyses(entry["analyses"], setting, f"profiles.{name}.analyses")
        typed_profiles[name] = _validated(ProfileSpec, entry if entry is not None else {}, f"profiles.{name}")
    generic = {k: v for k, v in raw.items() if k in GENERIC_KEYS}
    spec = _validated(Spec, {**generic, "analyses": _analyses(raw.get("analyses"), setting, "analyses"),
                             "profiles": typed_profiles, "options": options}, "")
    _check_keys(spec, setting)
    return spec


def _check_keys(spec: Spec, setting: Rules) -> None:
    """Every axis, ``when`` axis and base stage one the setting knows; every axis it needs given a default."""
    allowed = setting.axes
    places = [("axes", spec.axes), *((f"profiles.{p}.axes", s.axes) for p, s in spec.profiles.items()),
              *((f"analyses.{a}.when", s.when) for a, s in spec.analyses.items()),
              *((f"profiles.{p}.analyses.{a}.when", a_s.when) for p, s in spec.profiles.items()
                for a, a_s in s.analyses.items())]
    for where, axes in places:
        for axis, values in axes.items():
            if axis not in allowed:
                raise ConfigError(f"{where}.{axis}", axis, f"an axis of a {spec.kind} spec: {list(allowed)}")
            if not values:
                raise ConfigError(f"{where}.{axis}", values, "a non-empty list of values")
    for where, base in [("base", spec.base), *((f"profiles.{p}.base", s.base) for p, s in spec.profiles.items())]:
        for stage in base:
            if stage not in setting.base_stages:
                raise ConfigError(f"{where}.{stage}", stage, f"one of {list(setting.base_stages)}")
    missing = [a for a in allowed if a not in spec.axes and a not in setting.optional_axes]
    if missing:
        raise ConfigError(f"axes.{missing[0]}", None, "a list of values (every axis needs a default)")
