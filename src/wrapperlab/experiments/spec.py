"""Experiment specs: a YAML file names a paper experiment's grid and analyses; it expands into a graph.

A spec (``experiments/specs/<name>.yaml`` in the package, or any path) holds::

    name, kind (pcfg | tracr), description
    base:      dotted overrides per stage (pretrain, finetune, reft), applied on the profile
    axes:      grid axes -> value lists (pcfg: prior, lr, c_tr; tracr: lr, c_tr, noise_std)
    analyses:  analysis -> the axis values it runs on (pcfg: prune, probe, reft; tracr: prune, attention, reft)
    profiles:  profile -> {axes: overrides of the axes, seeds: how many, base: stage overrides for it,
               analyses: entries replacing the spec's analyses of the same name}

:func:`expand` turns (spec, profile, seeds) into :class:`Node` s in dependency order — one pretraining (or
compilation) shared by all the fine-tunings that start from it, analyses and reFT after their
fine-tuning (with reFT baselines, the Scr.+FT pretraining as a node of its own) — each naming the
content-addressed run it computes, so a runner can tell finished nodes
from missing ones before running anything.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wrapperlab.errors import ConfigError

AXES = {"pcfg": ("prior", "lr", "c_tr"), "tracr": ("lr", "c_tr", "noise_std"), "stories": ("protocol", "lr")}
ANALYSES = {"pcfg": ("prune", "probe", "reft"), "tracr": ("prune", "attention", "reft"), "stories": ("probe", "reft")}
STAGES = ("pretrain", "finetune", "reft")


class AnalysisSpec(BaseModel):
    """Where an analysis runs: the axis values it is restricted to (others: every value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    when: dict[str, list[Any]] = Field(default_factory=dict)
    baselines: bool | list[Literal["scr+ft", "scr"]] = Field(
        False, description="reft: also the baselines (true: Scr.+FT and Scr.; or a list of them)")
    ks: list[int] | None = Field(None, description="pcfg prune: numbers of units pruned (default 0..50)")
    n_eval: int | None = Field(None, gt=0, description="pcfg prune: test samples per accuracy (default 1000)")
    iters: int | None = Field(None, gt=0, description="pcfg probe: training steps (default: the profile's)")
    corpora: list[Literal["twist", "mixed"]] = Field(
        ["twist"], description="stories reft: Twist-only stories (the paper) and/or a truly labelled Twist-rich mix")
    mixed_when: dict[str, list[Any]] | None = Field(
        None, description="stories reft: where the mixed corpus runs (default: wherever reft runs)")


class ProfileSpec(BaseModel):
    """What a profile changes for this experiment: grid axes, seeds, and stage settings on top of ``base``
    (so a spec can size its own quick run without changing the shared profile every other command uses)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: int = Field(3, gt=0)
    base: dict[str, dict[str, Any]] = Field(default_factory=dict)
    analyses: dict[str, AnalysisSpec] = Field(default_factory=dict)  # replace the spec's entries of these names


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    kind: Literal["pcfg", "tracr", "stories"]
    description: str = ""
    program: str = Field("counter", description="tracr: the compiled program")
    base: dict[str, dict[str, Any]] = Field(default_factory=dict)
    axes: dict[str, list[Any]]
    analyses: dict[str, AnalysisSpec] = Field(default_factory=dict)
    profiles: dict[str, ProfileSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_keys(self):
        allowed = AXES[self.kind]
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
                if name not in ANALYSES[self.kind]:
                    raise ConfigError(f"{where}.{name}", name, f"one of {list(ANALYSES[self.kind])}")
        missing = [a for a in allowed if a not in self.axes and a != "noise_std"]
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
    folder = resources.files("wrapperlab.experiments").joinpath("specs")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_spec(ref: str | Path) -> Spec:
    """A shipped spec by name, or a YAML file; bad content is one ConfigError naming the file and key."""
    path = Path(ref)
    if not path.suffix and str(ref) in shipped_specs():
        text = resources.files("wrapperlab.experiments").joinpath("specs", f"{ref}.yaml").read_text()
        where = f"spec {ref}"
    else:
        try:
            text = path.read_text()
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


@dataclass
class Node:
    """One step of a reproduction: what it computes, from what, and for which grid point."""

    key: str  # unique and readable, e.g. "finetune seed=0 prior=low lr=M c_tr=1.0"
    stage: str  # pretrain | baseline (Scr.+FT pretraining) | finetune | prune | probe | reft | compile | attention
    point: dict[str, Any]  # seed and axis values
    parents: list[str] = field(default_factory=list)  # keys
    options: dict[str, Any] = field(default_factory=dict)


def _key(stage: str, point: dict[str, Any]) -> str:
    return stage + " " + " ".join(f"{k}={v}" for k, v in point.items())


def _selected(when: dict[str, list[Any]], point: dict[str, Any]) -> bool:
    return all(point.get(axis) in values for axis, values in when.items())


def expand(spec: Spec, profile: str, seeds: int | None = None) -> list[Node]:
    """The nodes of a reproduction in dependency order (parents before children)."""
    if spec.kind == "stories":
        return _expand_stories(spec, profile, seeds)
    axes = spec.axes_for(profile)
    nodes: list[Node] = []
    root_axes = ("prior",) if spec.kind == "pcfg" else ()
    cell_axes = [a for a in AXES[spec.kind] if a in axes and a not in root_axes]
    for seed in spec.seeds_for(profile, seeds):
        for root_values in itertools.product(*(axes[a] for a in root_axes)):
            shared = dict(zip(root_axes, root_values))
            # a pretraining belongs to one seed; a compiled program is the same for every seed
            root_point = {"seed": seed, **shared} if spec.kind == "pcfg" else {"program": spec.program}
            stage = "pretrain" if spec.kind == "pcfg" else "compile"
            root = Node(_key(stage, root_point), stage, root_point)
            if not any(n.key == root.key for n in nodes):
                nodes.append(root)
            for values in itertools.product(*(axes[a] for a in cell_axes)):
                point = {"seed": seed, **shared, **dict(zip(cell_axes, values))}
                ft = Node(_key("finetune", point), "finetune", point, [root.key])
                nodes.append(ft)
                for name, analysis in spec.analyses_for(profile).items():
                    if _selected(analysis.when, point):
                        parents = [ft.key]
                        if name == "reft" and _needs_pretrained_baseline(analysis) and spec.kind == "pcfg":
                            parents.append(_baseline(nodes, root))
                        nodes.append(Node(_key(name, point), name, point, parents, analysis.model_dump()))
    return nodes


def _needs_pretrained_baseline(analysis: AnalysisSpec) -> bool:
    return analysis.baselines is True or "scr+ft" in (analysis.baselines or [])


def _baseline(nodes: list[Node], root: Node) -> str:
    """The Scr.+FT pretraining of ``root`` (its own node, so it can train while the fine-tunings do)."""
    key = _key("baseline", root.point)
    if not any(n.key == key for n in nodes):
        nodes.append(Node(key, "baseline", root.point, [root.key]))
    return key


def _expand_stories(spec: Spec, profile: str, seeds: int | None) -> list[Node]:
    """Per seed: the pretraining and (for reFT baselines or probes) the "not in PT" control, each a root;
    one deletion per (protocol, lr); reFT per selected deletion and corpus (and from the control with
    baselines); probes of the pretrained model, the control and the selected deletions."""
    axes, analyses = spec.axes_for(profile), spec.analyses_for(profile)
    reft, probe = analyses.get("reft"), analyses.get("probe")
    nodes: list[Node] = []
    for seed in spec.seeds_for(profile, seeds):
        root = Node(_key("pretrain", {"seed": seed}), "pretrain", {"seed": seed})
        nodes.append(root)
        control = None
        if probe is not None or (reft is not None and reft.baselines):
            control = Node(_key("control", {"seed": seed}), "control", {"seed": seed})
            nodes.append(control)
        if probe is not None:
            for model, parent in (("pretrained", root), ("control", control)):
                point = {"seed": seed, "model": model}
                nodes.append(Node(_key("probe", point), "probe", point, [parent.key]))
        for protocol, lr in itertools.product(axes["protocol"], axes["lr"]):
            point = {"seed": seed, "protocol": protocol, "lr": lr}
            ft = Node(_key("finetune", point), "finetune", point, [root.key])
            nodes.append(ft)
            if probe is not None and _selected(probe.when, point):
                nodes.append(Node(_key("probe", point), "probe", point, [ft.key]))
            if reft is not None and _selected(reft.when, point):
                mixed_here = reft.mixed_when is None or _selected(reft.mixed_when, point)
                nodes += [Node(_key("reft", {**point, "corpus": c}), "reft", {**point, "corpus": c}, [ft.key])
                          for c in reft.corpora if c != "mixed" or mixed_here]
        if reft is not None and reft.baselines and control is not None:
            nodes += [Node(_key("reft", p), "reft", p, [control.key])
                      for p in ({"seed": seed, "from": "control", "corpus": c} for c in reft.corpora)]
    return nodes
