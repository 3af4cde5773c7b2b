"""A stored reproduction read back typed: what ``reproduce`` wrote (``<store>/reproductions/<spec>-<profile>.json``)
as a :class:`Reproduced` of :class:`Record` s, each node's result parsed into the typed result its setting's stage
produces (``Stage.result``). The report sections group, decide and render over these, never over raw JSON.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wrapperlab.errors import ConfigError
from wrapperlab.schema import Result
from wrapperlab.settings import registry

#: the keys of a reproduction record every setting's has; any other top-level key is a spec option of its setting
GENERIC_KEYS = ("spec", "kind", "profile", "base", "computed", "seconds", "nodes")


@dataclass(frozen=True)
class Record:
    """One node of a reproduction: its grid point, the run (or analysed run) it stands for, and its typed result."""

    key: str
    stage: str
    point: dict[str, Any]
    run_id: str
    reused: bool
    result: Result
    seconds: float = 0.0
    split: dict[str, float] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.point["seed"]

    def timing(self) -> dict[str, Any]:
        """What ``timing.per_stage`` reads of a node."""
        return {"stage": self.stage, "seconds": self.seconds, "split": self.split, "reused": self.reused}


@dataclass(frozen=True)
class Reproduced:
    """A stored reproduction: its spec, setting and profile, the spec's stage overrides (``base``) and options (a
    Tracr program), the call's time, and every node."""

    spec: str
    kind: str
    profile: str
    base: dict[str, dict[str, Any]]
    options: dict[str, Any]
    computed: int
    seconds: float | None
    nodes: list[Record]

    def of(self, stage: str) -> list[Record]:
        return [n for n in self.nodes if n.stage == stage]


NODE_KEYS = ("key", "stage", "point", "run_id", "reused")


def _node(n: Any, i: int, setting, path: Path) -> Record:
    """One node record typed; a damaged one (not an object, a key missing, an unknown stage) is one ConfigError
    naming the file and the node."""
    if not isinstance(n, dict) or any(k not in n for k in NODE_KEYS):
        raise ConfigError(f"{path}: node {i}", "damaged", f"a node record with {', '.join(NODE_KEYS)}")
    if n["stage"] not in setting.stages:
        raise ConfigError(f"{path}: {n['key']}", n["stage"], f"a stage of {setting.name} ({sorted(setting.stages)})")
    result = setting.stages[n["stage"]].result.from_json(n.get("data", {}), f"{path.name}: {n['key']}")
    return Record(n["key"], n["stage"], n["point"], n["run_id"], n["reused"], result, n.get("seconds", 0.0),
                  n.get("split") or {})


def read_reproduction(path: Path) -> Reproduced:
    """``path`` read and typed; a file that is not a reproduction (or one of an unknown setting) is one ConfigError
    naming it."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(str(path), "unreadable", f"a reproduction record ({' '.join(str(e).split())})") from None
    if not isinstance(raw, dict) or any(k not in raw for k in ("spec", "kind", "profile", "nodes")):
        raise ConfigError(str(path), "not a reproduction", "a JSON object with spec, kind, profile and nodes")
    try:
        setting = registry.get(raw["kind"])
    except ConfigError as e:
        raise ConfigError(f"{path}: kind", e.value, e.allowed) from None
    if not isinstance(raw["nodes"], list):
        raise ConfigError(f"{path}: nodes", type(raw["nodes"]).__name__, "a list of node records")
    nodes = [_node(n, i, setting, path) for i, n in enumerate(raw["nodes"])]
    options = {k: v for k, v in raw.items() if k not in GENERIC_KEYS}
    return Reproduced(raw["spec"], raw["kind"], raw["profile"], raw.get("base", {}), options,
                      raw.get("computed", 0), raw.get("seconds"), nodes)


def groups(nodes: list[Record], stage: str) -> dict[tuple, list[Record]]:
    """A stage's nodes per grid cell (the point without its seed, as a sorted tuple of items)."""
    out: dict[tuple, list[Record]] = defaultdict(list)
    for n in nodes:
        if n.stage == stage:
            out[tuple(sorted((k, v) for k, v in n.point.items() if k != "seed"))].append(n)
    return out


def by_seed(nodes: list[Record]) -> dict[int, Result]:
    """The nodes' results by seed."""
    return {n.seed: n.result for n in nodes}
