"""What a *setting* is: a family of models with a known capability (PCFG tasks, Tracr programs, stories) and
everything the rest of the toolkit needs to know about it, declared once.

The run graph, the report and the CLI never ask "is this PCFG or Tracr?": they look a :class:`Setting` up in
:mod:`wrapperlab.settings.registry` by a spec's ``kind`` or a run's ``kind`` and call what it declares. Its stages
are a table (:class:`Stage` per stage name): how a node's config is built, how it runs, which ready node goes first,
which may train as one stack. Adding a setting is one package under ``settings/`` that builds a :class:`Setting`,
one line in the registry, a report section and a CLI module; docs/architecture.md walks through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping

from wrapperlab.settings.graph import PLANNED, Node, NodeContext, Outcome

if TYPE_CHECKING:  # names for annotations only: importing this module (the registry does) loads no torch
    from torch import nn

    from wrapperlab.runs.store import Run
    from wrapperlab.schema import Config, Result
    from wrapperlab.settings.spec import AnalysisOptions, Spec


@dataclass(frozen=True)
class Stage:
    """One stage of a setting's graph.

    ``config(node, ctx)`` builds the typed config the node's run (or analysis) is keyed by, from the node and its
    parents' outcomes (``ctx.parents``, each holding its own config). The same builder serves the run and the check
    before the first run (:meth:`Setting.check`), where the parents are planned outcomes: a bad value anywhere in a
    spec is one error before anything trains. ``run(node, ctx, cfg)`` computes the node from that config.
    ``result``: the typed result its outcome holds (a ``schema.Result``: what the report reads back). ``rank``: which
    ready node a free worker takes first (lower first). ``stack(nodes, ctxs, cfgs)``: several ready nodes of this
    stage computed together, their trainings stacked (``reproduce --stack N``), each outcome as ``run`` would give
    it."""

    run: Callable[[Node, NodeContext, Any], Outcome]
    config: Callable[[Node, NodeContext], Any] | None = None
    result: type[Result] | None = None
    rank: int = 9
    stack: Callable[[list[Node], list[NodeContext], list[Any]], list[Outcome]] | None = None

    def __post_init__(self):
        if self.result is None:
            raise TypeError("a stage declares the type of its result (Stage(..., result=...))")


@dataclass(frozen=True)
class Setting:
    """The contract a setting fulfils; every field is read by exactly the layer named beside it."""

    name: str  # a spec's ``kind``
    run_kinds: tuple[str, ...]  # the run directory kinds it owns (CLI, report: a run's setting)
    lr_names: Mapping[str, float]  # its one table of named learning rates (the validation context of its configs)
    axes: tuple[str, ...]  # a spec's grid axes, in expansion order (spec validation)
    stages: Mapping[str, Stage]  # every node stage of its graphs (the runner, the executors)
    analyses: Mapping[str, type[AnalysisOptions]]  # a spec's analyses and their typed options (spec validation)
    expand: Callable[[Spec, str, int | None], list[Node]]  # spec + profile + seeds -> nodes, parents first
    load_model: Callable[[Run], nn.Module]  # a finished run's trained model, in eval mode
    versions: Mapping[str, int]  # code version per run kind and analysis kind (cache keys)
    report_section: str  # "module:function" building the report section (imported lazily: report is above)
    optional_axes: tuple[str, ...] = ()  # axes a spec may leave out
    base_stages: tuple[str, ...] = ("pretrain", "finetune", "reft")  # stages a spec's ``base`` may override
    spec_options: type[Config] | None = None  # a spec's top-level keys beyond the generic ones (Tracr: program)
    # a finished run's tokenizer (a ``tokenizers.Tokenizer``) and its special tokens (CLI export to a Hugging Face
    # directory); None: the setting's models export without one
    tokenizer: Callable[[Run], tuple[Any, dict[str, str]]] | None = field(default=None)

    def stage(self, name: str) -> Stage:
        if name not in self.stages:
            raise ValueError(f"unknown {self.name} stage {name!r} (its stages: {sorted(self.stages)})")
        return self.stages[name]

    def run_node(self, node: Node, ctx: NodeContext) -> Outcome:
        """Compute one node: its config from its parents' outcomes, then its run (every executor calls this)."""
        stage = self.stage(node.stage)
        return stage.run(node, ctx, stage.config(node, ctx) if stage.config else None)

    def stackable(self, stage: str) -> bool:
        return self.stage(stage).stack is not None

    def run_group(self, nodes: list[Node], ctxs: list[NodeContext]) -> list[Outcome]:
        """Nodes of one stage computed together: as one stack where the stage has one, else one after another."""
        stage = self.stage(nodes[0].stage)
        if any(n.stage != nodes[0].stage for n in nodes):
            raise ValueError("a group holds nodes of one stage")
        if len(nodes) == 1 or stage.stack is None:
            return [self.run_node(node, ctx) for node, ctx in zip(nodes, ctxs)]
        cfgs = [stage.config(node, ctx) if stage.config else None for node, ctx in zip(nodes, ctxs)]
        return stage.stack(nodes, ctxs, cfgs)

    def check(self, nodes: list[Node], ctx: NodeContext) -> None:
        """Build every node's config in graph order, each from its parents' planned outcomes (the configs built
        for them, a placeholder id): a bad value in a spec stops the reproduction before its first run."""
        planned: dict[str, Outcome] = {}
        for node in nodes:
            stage = self.stage(node.stage)
            here = replace(ctx, parents=[planned[p] for p in node.parents])
            planned[node.key] = Outcome(PLANNED, False, config=stage.config(node, here) if stage.config else None)

