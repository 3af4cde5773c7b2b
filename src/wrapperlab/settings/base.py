"""What a *setting* is: a family of models with a known capability (PCFG tasks, Tracr programs, stories) and
everything the rest of the toolkit needs to know about it, declared once.

The run graph, the report and the CLI never ask "is this PCFG or Tracr?": they look a :class:`Setting` up in
:mod:`wrapperlab.settings.registry` by a spec's ``kind`` or a run's ``kind`` and call what it declares. Adding a
setting is one package under ``settings/`` that builds a :class:`Setting`, one line in the registry, a report
section and a CLI module; docs/architecture.md walks through it.

Also here, because every setting's graph speaks them: :class:`Node` (one step of a reproduction),
:class:`Outcome` (what a node produced) and :class:`NodeContext` (what a node runs with).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

if TYPE_CHECKING:  # names for annotations only: importing this module (the registry does) loads no torch
    from torch import nn

    from wrapperlab.orchestration.spec import Spec  # lives above the settings; only its shape is used here
    from wrapperlab.runs.stage import Say
    from wrapperlab.runs.store import Run, RunStore
    from wrapperlab.training.config import Runtime


@dataclass
class Node:
    """One step of a reproduction: what it computes, from what, and for which grid point."""

    key: str  # unique and readable, e.g. "finetune seed=0 prior=low lr=M c_tr=1.0"
    stage: str  # a stage name of the node's setting (pretrain, finetune, prune, compile, control, ...)
    point: dict[str, Any]  # seed and axis values
    parents: list[str] = field(default_factory=list)  # keys
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a node produced: the run (or analysed run) id, whether it already existed, and its data."""

    run_id: str
    reused: bool
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of the node where it ran
    split: dict[str, float] = field(default_factory=dict)  # that time by section (wrapperlab.timing)


@dataclass
class NodeContext:
    """What a node is computed with: the spec and profile it belongs to, the store, its first parent's outcome."""

    spec: Spec
    profile: str
    store: RunStore
    parent: Outcome | None
    runtime: Runtime
    say: Say

    def base(self, stage: str) -> dict[str, Any]:
        """The spec's dotted overrides of ``stage`` under this profile."""
        return self.spec.base_for(self.profile, stage)

    def overrides(self, stage: str, point: dict[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
        """``stage``'s base overrides plus the grid point's values under their dotted config names."""
        return {**self.base(stage), **{dotted: point[axis] for axis, dotted in names.items() if axis in point}}


@dataclass(frozen=True)
class Setting:
    """The contract a setting fulfils; every field is read by exactly the layer named beside it."""

    name: str  # a spec's ``kind``
    run_kinds: tuple[str, ...]  # the run directory kinds it owns (CLI, report: a run's setting)
    lr_names: Mapping[str, float]  # the paper's named learning rates (report labels, CLI/config parsing)
    axes: tuple[str, ...]  # a spec's grid axes, in expansion order (spec validation)
    analyses: tuple[str, ...]  # a spec's analyses (spec validation)
    expand: Callable[[Spec, str, int | None], list[Node]]  # spec + profile + seeds -> nodes, parents first
    run_node: Callable[[Node, NodeContext], Outcome]  # compute one node (every executor calls this)
    load_model: Callable[[Run], nn.Module]  # a finished run's trained model, in eval mode
    versions: Mapping[str, int]  # code version per run kind and analysis kind (cache keys)
    report_section: str  # "module:function" building the report section (imported lazily: report is above)
    stage_rank: Mapping[str, int] = field(default_factory=dict)  # which ready node a free worker takes first
    optional_axes: tuple[str, ...] = ()  # axes a spec may leave out
    spec_fields: tuple[str, ...] = ()  # spec fields beyond the grid that the setting reads (saved with a run)
    # nodes of one stage computed together, their trainings stacked (runtime.stack > 1; executors): each node's
    # outcome as run_node would give it
    run_group: Callable[[list[Node], list[NodeContext]], list[Outcome]] | None = None
    stack_stages: tuple[str, ...] = ()  # the stages run_group takes
    # every stage config the nodes will build, built now with placeholder parents (runner, before any node runs):
    # a bad value in a spec stops the reproduction before its first run, not after its pretrainings
    check: Callable[[list[Node], NodeContext], None] | None = None
    # a finished run's tokenizer (a ``tokenizers.Tokenizer``) and its special tokens (CLI export to a Hugging Face
    # directory); None: the setting's models export without one
    tokenizer: Callable[[Run], tuple[Any, dict[str, str]]] | None = None


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


def expand_tree(spec: Spec, profile: str, seeds: int | None, axis_order: tuple[str, ...], root_stage: str,
                root_axes: tuple[str, ...],
                root_point: Callable[[int, dict[str, Any]], dict[str, Any]],
                extra_parents: Callable[[str, Any, Node, list[Node]], list[str]] | None = None) -> list[Node]:
    """The common graph shape: per seed and root-axis values one root (shared where its point repeats), under it
    one fine-tuning per cell of the other axes, and after each fine-tuning the analyses selected for its cell.
    ``extra_parents(name, analysis, root, nodes)`` may add nodes an analysis also waits for (returns their keys)."""
    axes = spec.axes_for(profile)
    cell_axes = [a for a in axis_order if a in axes and a not in root_axes]
    nodes: list[Node] = []
    for seed in spec.seeds_for(profile, seeds):
        for shared in grid(axes, root_axes):
            point = root_point(seed, shared)
            root = add_once(nodes, Node(node_key(root_stage, point), root_stage, point))
            for cell in grid(axes, cell_axes):
                point = {"seed": seed, **shared, **cell}
                ft = Node(node_key("finetune", point), "finetune", point, [root.key])
                nodes.append(ft)
                for name, analysis in spec.analyses_for(profile).items():
                    if selected(analysis.when, point):
                        extra = extra_parents(name, analysis, root, nodes) if extra_parents else []
                        nodes.append(Node(node_key(name, point), name, point, [ft.key, *extra], analysis.model_dump()))
    return nodes


def per_reft_lr(nodes: list[Node], lr_value: Callable[[Any], float]) -> list[Node]:
    """A reFT node whose analysis names ``lrs`` becomes one node per reFT lr not above its fine-tuning lr (point
    ``reft_lr``; ``lr_value`` turns a setting's lr names into numbers); a fine-tuning below every listed lr gets
    none (the paper never reverse fine-tunes faster than it fine-tuned)."""
    out: list[Node] = []
    for node in nodes:
        lrs = node.options.get("lrs") if node.stage == "reft" else None
        if not lrs:
            out.append(node)
            continue
        for lr in lrs:
            if lr_value(lr) <= lr_value(node.point["lr"]) * (1 + 1e-9):
                point = {**node.point, "reft_lr": lr}
                out.append(Node(node_key("reft", point), "reft", point, node.parents, node.options))
    return out
