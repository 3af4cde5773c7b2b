"""Spec files: a shipped spec by name or a YAML file, read, its setting found by ``kind`` and the spec validated
against it (:func:`wrapperlab.settings.spec.parse_spec`); :func:`expand` lays it out as nodes through its setting.

The spec's shape and its expansion belong to the settings (settings/spec.py, each setting's ``expand``); this
module only reads files and looks a setting up.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from wrapperlab.errors import ConfigError
from wrapperlab.settings import registry
from wrapperlab.settings.graph import Node
from wrapperlab.settings.spec import Spec, parse_spec


def shipped_specs() -> list[str]:
    folder = resources.files("wrapperlab.orchestration").joinpath("specs")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read(ref: str | Path) -> tuple[str, str]:
    """(text, where) of a shipped spec or a spec file; an unreadable one is one ConfigError."""
    path = Path(ref)
    if not path.suffix and str(ref) in shipped_specs():
        return resources.files("wrapperlab.orchestration").joinpath("specs", f"{ref}.yaml").read_text(), f"spec {ref}"
    try:
        return path.read_text(encoding="utf-8"), f"spec {path}"
    except UnicodeDecodeError:
        raise ConfigError("spec", str(ref), "a UTF-8 YAML file (this one is binary)") from None
    except OSError:
        raise ConfigError("spec", str(ref), f"a spec file or one of {shipped_specs()}") from None


MAX_SPEC_CHARS, MAX_SPEC_DEPTH, MAX_SPEC_ALIASES = 1_000_000, 32, 64


def _bounded(text: str, where: str) -> None:
    """Refuse a spec too large, too deep or with too many aliases before it is built: a spec nested thousands deep
    overflows the YAML composer's recursion, and a few lines of nested aliases ("billion laughs") expand to more
    values than validation can walk — both hung or traced back instead of saying so. The events are scanned
    (no recursion) and the scan stops at the first bound crossed."""
    if len(text) > MAX_SPEC_CHARS:
        raise ConfigError(where, f"{len(text):,} characters", f"a spec of at most {MAX_SPEC_CHARS:,}")
    depth = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_SPEC_DEPTH:
                raise ConfigError(where, f"nesting deeper than {MAX_SPEC_DEPTH}", "a spec nested at most that deep")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_SPEC_ALIASES:
                raise ConfigError(where, f"more than {MAX_SPEC_ALIASES} aliases (*name)",
                                  "a spec that repeats values by alias at most that often")


def load_spec(ref: str | Path) -> Spec:
    """A shipped spec by name, or a YAML file; bad content is one ConfigError naming the file and key."""
    text, where = _read(ref)
    try:
        _bounded(text, where)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(where, "unparsable YAML", f"valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(where, type(raw).__name__, "a mapping with keys name, kind, axes, ...")
    kind = raw.get("kind")
    try:
        if not isinstance(kind, str):
            raise ConfigError("kind", kind, f"one of {registry.names()}")
        return parse_spec(raw, registry.get(kind))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e.field}" if e.field else where, e.value, e.allowed) from None


def expand(spec: Spec, profile: str, seeds: int | None = None) -> list[Node]:
    """The nodes of a reproduction in dependency order (parents before children), as the spec's setting lays them."""
    return registry.get(spec.kind).expand(spec, profile, seeds)
