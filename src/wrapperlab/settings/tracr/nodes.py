"""How a Tracr spec becomes a run graph, and the table of its stages (:data:`STAGES`).

One compilation shared by every seed (a compiled program does not depend on one); under it one fine-tuning per
(seed, lr, C_Tr[, noise]); after a fine-tuning the selected analyses (attention, single-weight prune, reft).
"""

from __future__ import annotations

from torch import nn

from wrapperlab.errors import ConfigError
from wrapperlab.models.tracr.programs import program, target_variant
from wrapperlab.runs.store import Run
from wrapperlab.schema import Config
from wrapperlab.settings.base import Stage
from wrapperlab.settings.graph import PLANNED, Node, NodeContext, Outcome, Tree, add_once, expand_tree, node_key
from wrapperlab.settings.reft_options import ReftOptions, per_reft_lr
from wrapperlab.settings.spec import AnalysisOptions
from wrapperlab.settings.tracr.results import RESULTS, AttentionRecord, WeightSearchRecord
from wrapperlab.settings.tracr.stages import (
    TracrCompileConfig,
    attention_run,
    compile_config,
    compile_stage,
    compiled_of,
    finetune_config_for,
    reft_config_for,
    tracr_finetune,
    tracr_lr,
    weight_search_run,
)

AXES = ("lr", "c_tr", "noise_std")
ANALYSES = {"prune": AnalysisOptions, "attention": AnalysisOptions, "reft": ReftOptions}
FINETUNE_NAMES = {"seed": "seed", "lr": "train.lr", "c_tr": "data.c_tr", "noise_std": "noise_std"}


class TracrSpecOptions(Config):
    """A Tracr spec's own top-level key: the compiled program."""

    program: str = "counter"


def expand(spec, profile: str, seeds: int | None = None) -> list[Node]:
    """The tree of :func:`expand_tree`, a reFT node per named reFT lr (``lrs``: the same grid for every fine-tuning
    lr, each taking those not above its own — so "η_L revives faster" is not a larger reFT lr in disguise), and
    with ``baselines`` one Scr.+FT and/or Scr. run per (seed, reFT lr) beside the reFTs they are compared with:
    Scr.+FT the program compiled for the fine-tuning target (``counter-b``: never counted a), Scr. the compiled
    architecture freshly initialised — each trained on the pretraining question like the reFT."""
    name = spec.options.program
    tree = Tree(AXES, "compile", root_point=lambda seed, shared: {"program": name})
    nodes = per_reft_lr(expand_tree(spec, profile, seeds, tree), tracr_lr)
    out: list[Node] = []  # in dependency order: a baseline before the reFTs that wait for it
    for node in nodes:
        options = node.options if node.stage == "reft" else None
        if options is not None and options.baselines:
            point = {"seed": node.point["seed"], "reft_lr": node.point.get("reft_lr")}
            extra = []
            if options.wants("scr+ft"):
                target = {"program": name, "target": "ft"}  # compiled for the fine-tuning target
                compiled_ft = add_once(out, Node(node_key("compile", target), "compile", target))
                extra.append(add_once(out, Node(node_key("scrft", point), "scrft", point, [compiled_ft.key],
                                                options)).key)
            if options.wants("scr"):
                extra.append(add_once(out, Node(node_key("scratch", point), "scratch", point, [nodes[0].key],
                                                options)).key)
            node = Node(node.key, node.stage, node.point, [*node.parents, *extra], node.options)
        out.append(node)
    return out


# -- configs: each from the node and its parents' outcomes (planned ones while a spec is checked) ---------------


def _program_of(node: Node, ctx: NodeContext) -> str:
    """A compile node's program: the spec's, or (``target: ft``) the spec's compiled for the fine-tuning target."""
    name = ctx.spec.options.program
    if node.point.get("target") != "ft":
        return name
    return target_variant(name, finetune_config_for(PLANNED, name, ctx.profile, ctx.base("finetune")).data.ft)


def _compile_config(node: Node, ctx: NodeContext) -> TracrCompileConfig:
    return compile_config(_program_of(node, ctx))


def _finetune_config(node: Node, ctx: NodeContext):
    """A fine-tuning of the compiled parent; ``data.max_len`` held to the length the program compiles to, as loading
    the compiled model will (checked before JAX compiles anything)."""
    compiled: TracrCompileConfig = ctx.parent.config
    cfg = finetune_config_for(ctx.parent.run_id, program(compiled.program).task, ctx.profile,
                              ctx.overrides("finetune", node.point, FINETUNE_NAMES))
    max_len = compiled.max_seq_len or program(compiled.program).max_seq_len
    if cfg.data.max_len > max_len:
        raise ConfigError("finetune: data.max_len", cfg.data.max_len, f"at most {compiled.program}'s compiled "
                                                                      f"length {max_len}")
    return cfg


def _baseline_config(node: Node, ctx: NodeContext):
    """A baseline's config: the reFT's (the pretraining question on uncorrelated inputs, at the reFT lr) with the
    baseline's own parent; without ``lrs`` the reFT lr must be named (a baseline has no fine-tuning lr to derive
    it from)."""
    if node.point.get("reft_lr") is None:
        raise ConfigError("analyses.reft.baselines", True, "with analyses.reft.lrs (a tracr baseline trains at each "
                                                           "named reFT lr)")
    ft = finetune_config_for(PLANNED, ctx.spec.options.program, ctx.profile,
                             ctx.overrides("finetune", {"seed": node.point["seed"]}, FINETUNE_NAMES))
    return reft_config_for(ctx.parent.run_id, ft, ctx.profile, node.point["reft_lr"], overrides=ctx.base("reft"))


def _reft_config(node: Node, ctx: NodeContext):
    return reft_config_for(ctx.parent.run_id, ctx.parent.config, ctx.profile, node.point.get("reft_lr"),
                           overrides=ctx.base("reft"))


# -- runs ----------------------------------------------------------------------------------------------------


def _outcome(node: Node, stage, cfg) -> Outcome:
    return Outcome(stage.run.id, stage.reused, RESULTS[node.stage].from_json(stage.result, stage.run.id), cfg)


def _run_compile(node: Node, ctx: NodeContext, cfg) -> Outcome:
    return _outcome(node, compile_stage(cfg, ctx.store, say=ctx.say), cfg)


def _trainer(kind: str):
    """A stage that trains its config as a run of ``kind`` (fine-tuning, reFT and the baselines differ only in it)."""
    def run(node: Node, ctx: NodeContext, cfg) -> Outcome:
        return _outcome(node, tracr_finetune(cfg, ctx.store, ctx.runtime, say=ctx.say, kind=kind), cfg)

    return run


def _run_attention(node: Node, ctx: NodeContext, cfg) -> Outcome:
    art = attention_run(ctx.store, ctx.parent.run_id, seed=node.point["seed"])
    return Outcome(ctx.parent.run_id, art.reused, AttentionRecord.from_json(art.data, str(art.json_path)))


def _run_prune(node: Node, ctx: NodeContext, cfg) -> Outcome:
    art = weight_search_run(ctx.store, ctx.parent.run_id, seed=node.point["seed"], say=ctx.say)
    return Outcome(ctx.parent.run_id, art.reused, WeightSearchRecord.from_json(art.data, str(art.json_path)))


#: every stage of a Tracr graph, ranked: the compilations first, then what the baselines and reFTs wait for
STAGES = {
    "compile": Stage(_run_compile, _compile_config, RESULTS["compile"], rank=0),
    "finetune": Stage(_trainer("tracr-finetune"), _finetune_config, RESULTS["finetune"], rank=1),
    "scrft": Stage(_trainer("tracr-scrft"), _baseline_config, RESULTS["scrft"], rank=2),
    "scratch": Stage(_trainer("tracr-scratch"), _baseline_config, RESULTS["scratch"], rank=2),
    "reft": Stage(_trainer("tracr-reft"), _reft_config, RESULTS["reft"], rank=3),
    "prune": Stage(_run_prune, result=RESULTS["prune"], rank=4),
    "attention": Stage(_run_attention, result=RESULTS["attention"], rank=4),
}


def load_model(run: Run) -> nn.Module:
    """A tracr run's model: the compiled architecture with the run's weights, in eval mode."""
    return compiled_of(run).model().eval()
