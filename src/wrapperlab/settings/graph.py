"""What every setting's run graph speaks: :class:`Node` (one step of a reproduction), :class:`Outcome` (what a node
produced) and :class:`NodeContext` (what a node is computed with), and the helpers that lay a spec's grid out as
nodes. Below the orchestration, which only schedules nodes: it never looks inside one.

Why outcomes carry their config: a child's config is built from its parents' (a fine-tuning names its pretraining, a
Scr.+FT pretraining is its root's with another prior, a story reFT reads its root's corpus), so the same builder serves
the run and the check before any run exists — at check time the parents' outcomes are *planned* ones, holding the
configs the check built for them and a placeholder id (:data:`PLANNED`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

if TYPE_CHECKING:  # names for annotations only: importing this module loads no torch
    from wrapperlab.runs.stage import Say
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.spec import AnalysisOptions, Spec
    from wrapperlab.training.config import Runtime

#: the run id a planned outcome (a spec's check, before anything runs) stands for its run with
PLANNED = "planned-000000000000"


@dataclass
class Node:
    """One step of a reproduction: what it computes, from what, and for which grid point. ``parents``: the nodes it
    waits for, its first parent the one it starts from (later ones are read, e.g. a pretraining root's config)."""

    key: str  # unique and readable, e.g. "finetune seed=0 prior=low lr=M c_tr=1.0"
    stage: str  # a stage of the node's setting (its STAGES table)
    point: dict[str, Any]  # seed and axis values
    parents: list[str] = field(default_factory=list)  # keys
    options: AnalysisOptions | None = None  # an analysis node's typed options (the spec's entry for it)


@dataclass
class Outcome:
    """What a node produced: the run (or analysed run) id, whether it already existed, its typed result (a
    ``schema.Result``: what the report reads) and the typed config it was computed from (what children build theirs
    from)."""

    run_id: str
    reused: bool
    result: Any = None
    config: Any = None
    seconds: float = 0.0  # wall time of the node where it ran
    split: dict[str, float] = field(default_factory=dict)  # that time by section (wrapperlab.timing)

    @property
    def planned(self) -> bool:
        """A stand-in built by a spec's check (its run does not exist yet)."""
        return self.run_id == PLANNED


@dataclass
class NodeContext:
    """What a node is computed with: the spec and profile it belongs to, the store, its parents' outcomes."""

    spec: Spec
    profile: str
    store: RunStore
    parents: list[Outcome]
    runtime: Runtime
    say: Say

    @property
    def parent(self) -> Outcome | None:
        """The outcome the node starts from (its first parent's)."""
        return self.parents[0] if self.parents else None

    def base(self, stage: str) -> dict[str, Any]:
        """The spec's dotted overrides of ``stage`` under this profile."""
        return self.spec.base_for(self.profile, stage)

    def overrides(self, stage: str, point: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
        """``stage``'s base overrides plus the grid point's values under their dotted config names."""
        return {**self.base(stage), **{dotted: point[axis] for axis, dotted in names.items() if axis in point}}


# -- helpers for a setting's ``expand`` -------------------------------------------------------------------


def node_key(stage: str, point: Mapping[str, Any]) -> str:
    return stage + " " + " ".join(f"{k}={v}" for k, v in point.items())


def selected(when: Mapping[str, list[Any]], point: Mapping[str, Any]) -> bool:
    """Whether an analysis restricted to ``when`` (axis -> values) runs at ``point``."""
    return all(point.get(axis) in values for axis, values in when.items())


def grid(axes: Mapping[str, list[Any]], names: tuple[str, ...] | list[str]) -> Iterator[dict[str, Any]]:
    """Every combination of the values of ``names`` (in that order), as a point."""
    for values in itertools.product(*(axes[a] for a in names)):
        yield dict(zip(names, values))


def add_once(nodes: list[Node], node: Node) -> Node:
    """Append ``node`` unless a node with its key is there (shared roots); return the one in the list."""
    found = next((n for n in nodes if n.key == node.key), None)
    if found is None:
        nodes.append(node)
        return node
    return found


@dataclass(frozen=True)
class Tree:
    """The common graph shape of a spec (:func:`expand_tree`): ``axis_order`` its axes in expansion order, one
    ``root_stage`` node per seed and value of ``root_axes`` (its point: ``root_point(seed, values)``), and
    ``extra_parents(name, options, root, nodes)`` the keys an analysis node also waits for."""

    axis_order: tuple[str, ...]
    root_stage: str
    root_axes: tuple[str, ...] = ()
    root_point: Callable[[int, dict[str, Any]], dict[str, Any]] = lambda seed, shared: {"seed": seed, **shared}
    extra_parents: Callable[[str, Any, Node, list[Node]], list[str]] | None = None


def expand_tree(spec: Spec, profile: str, seeds: int | None, tree: Tree) -> list[Node]:
    """Per seed and root-axis values one root (shared where its point repeats), under it one fine-tuning per cell of
    the other axes, and after each fine-tuning the analyses selected for its cell."""
    axes = spec.axes_for(profile)
    cell_axes = [a for a in tree.axis_order if a in axes and a not in tree.root_axes]
    nodes: list[Node] = []
    for seed in spec.seeds_for(profile, seeds):
        for shared in grid(axes, tree.root_axes):
            point = tree.root_point(seed, shared)
            root = add_once(nodes, Node(node_key(tree.root_stage, point), tree.root_stage, point))
            for cell in grid(axes, cell_axes):
                point = {"seed": seed, **shared, **cell}
                ft = Node(node_key("finetune", point), "finetune", point, [root.key])
                nodes.append(ft)
                for name, options in spec.analyses_for(profile).items():
                    if selected(options.when, point):
                        extra = tree.extra_parents(name, options, root, nodes) if tree.extra_parents else []
                        nodes.append(Node(node_key(name, point), name, point, [ft.key, *extra], options))
    return nodes
