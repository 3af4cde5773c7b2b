"""How a Tracr spec becomes a run graph, and how each of its nodes runs.

One compilation shared by every seed (a compiled program does not depend on one); under it one fine-tuning per
(seed, lr, C_Tr[, noise]); after a fine-tuning the selected analyses (attention, single-weight prune, reft).
"""

from __future__ import annotations

from torch import nn

from wrapperlab.errors import ConfigError
from wrapperlab.models.tracr.programs import program, target_variant
from wrapperlab.runs.store import Run
from wrapperlab.settings.base import Node, NodeContext, Outcome, add_once, expand_tree, node_key, per_reft_lr
from wrapperlab.settings.tracr.stages import (
    attention_run,
    compile_config,
    compile_stage,
    compiled_of,
    finetune_config_for,
    reft_config_for,
    tracr_finetune,
    tracr_finetune_config,
    tracr_lr,
    tracr_reft_config,
    weight_search_run,
)

AXES = ("lr", "c_tr", "noise_std")
ANALYSES = ("prune", "attention", "reft")
FINETUNE_NAMES = {"seed": "seed", "lr": "train.lr", "c_tr": "data.c_tr", "noise_std": "noise_std"}


def expand(spec, profile: str, seeds: int | None = None) -> list[Node]:
    """The tree of :func:`expand_tree`, a reFT node per named reFT lr (``lrs``: the same grid for every fine-tuning
    lr, each taking those not above its own — so "η_L revives faster" is not a larger reFT lr in disguise), and
    with ``baselines`` one Scr.+FT and/or Scr. run per (seed, reFT lr) beside the reFTs they are compared with:
    Scr.+FT the program compiled for the fine-tuning target (``counter-b``: never counted a), Scr. the compiled
    architecture freshly initialised — each trained on the pretraining question like the reFT."""
    nodes = per_reft_lr(expand_tree(spec, profile, seeds, AXES, "compile", (),
                                    lambda seed, shared: {"program": spec.program}), tracr_lr)
    out: list[Node] = []  # in dependency order: a baseline before the reFTs that wait for it
    for node in nodes:
        wanted = node.options.get("baselines") if node.stage == "reft" else None
        if wanted:
            point = {"seed": node.point["seed"], "reft_lr": node.point.get("reft_lr")}
            extra = []
            if wanted is True or "scr+ft" in wanted:
                target = {"program": spec.program, "target": "ft"}  # compiled for the fine-tuning target
                compiled_ft = add_once(out, Node(node_key("compile", target), "compile", target))
                extra.append(add_once(out, Node(node_key("scrft", point), "scrft", point, [compiled_ft.key],
                                                node.options)).key)
            if wanted is True or "scr" in wanted:
                extra.append(add_once(out, Node(node_key("scratch", point), "scratch", point, [nodes[0].key],
                                                node.options)).key)
            node = Node(node.key, node.stage, node.point, [*node.parents, *extra], node.options)
        out.append(node)
    return out


#: the parent id a spec's check builds configs with (no run exists yet; only the values are checked)
PLACEHOLDER_PARENT = "tracr-compile-check"


def check_nodes(nodes: list[Node], ctx: NodeContext) -> None:
    """Build every config the nodes will build (compilation, fine-tuning, reFT, baselines) before the first node
    runs, so a bad value anywhere in a Tracr spec is one ConfigError before JAX compiles anything. ``data.max_len``
    is held to the length the spec's program compiles to, as loading the compiled model will."""
    max_len = compile_config(ctx.spec.program).max_seq_len or program(ctx.spec.program).max_seq_len
    for node in nodes:
        if node.stage == "compile":
            compile_config(_program_of(node, ctx))
        if node.stage in ("scrft", "scratch"):
            _baseline_config(node, PLACEHOLDER_PARENT, ctx)
        if node.stage not in ("finetune", "reft"):  # a reFT node's point holds its fine-tuning's
            continue
        ft = finetune_config_for(PLACEHOLDER_PARENT, ctx.spec.program, ctx.profile,
                                 ctx.overrides("finetune", node.point, FINETUNE_NAMES))
        if ft.data.max_len > max_len:
            raise ConfigError("finetune: data.max_len", ft.data.max_len, f"at most {ctx.spec.program}'s compiled "
                                                                         f"length {max_len}")
        if node.stage == "reft":
            reft_config_for(PLACEHOLDER_PARENT, ft, ctx.profile, node.point.get("reft_lr"), overrides=ctx.base("reft"))


def _program_of(node: Node, ctx: NodeContext) -> str:
    """A compile node's program: the spec's, or (``target: ft``) the spec's compiled for the fine-tuning target."""
    if node.point.get("target") != "ft":
        return ctx.spec.program
    data = finetune_config_for(PLACEHOLDER_PARENT, ctx.spec.program, ctx.profile, ctx.base("finetune")).data
    return target_variant(ctx.spec.program, data.ft)


def _baseline_config(node: Node, parent_id: str, ctx: NodeContext):
    """A baseline's config: the reFT's (the pretraining question on uncorrelated inputs, at the reFT lr) with the
    baseline's own parent; without ``lrs`` the reFT lr must be named (a baseline has no fine-tuning lr to derive
    it from)."""
    if node.point.get("reft_lr") is None:
        raise ConfigError("analyses.reft.baselines", True, "with analyses.reft.lrs (a tracr baseline trains at each "
                                                           "named reFT lr)")
    ft = finetune_config_for(PLACEHOLDER_PARENT, ctx.spec.program, ctx.profile,
                             ctx.overrides("finetune", {"seed": node.point["seed"]}, FINETUNE_NAMES))
    return reft_config_for(parent_id, ft, ctx.profile, node.point["reft_lr"], overrides=ctx.base("reft"))


def run_node(node: Node, ctx: NodeContext) -> Outcome:
    store, parent = ctx.store, ctx.parent
    if node.stage == "compile":
        stage = compile_stage(compile_config(_program_of(node, ctx)), store, say=ctx.say)
        return Outcome(stage.run.id, stage.reused, stage.result)
    if node.stage in ("scrft", "scratch"):
        cfg = _baseline_config(node, parent.run_id, ctx)
        stage = tracr_finetune(cfg, store, ctx.runtime, say=ctx.say, kind=f"tracr-{node.stage}")
        return Outcome(stage.run.id, stage.reused, stage.result)
    seed = node.point["seed"]
    if node.stage == "finetune":
        cfg = tracr_finetune_config(store.resolve(parent.run_id), ctx.profile,
                                    ctx.overrides("finetune", node.point, FINETUNE_NAMES))
        stage = tracr_finetune(cfg, store, ctx.runtime, say=ctx.say)
        return Outcome(stage.run.id, stage.reused, stage.result)
    if node.stage == "attention":
        art = attention_run(store, parent.run_id, seed=seed)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "prune":
        art = weight_search_run(store, parent.run_id, seed=seed, say=ctx.say)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "reft":
        cfg = tracr_reft_config(store.resolve(parent.run_id), ctx.profile, node.point.get("reft_lr"),
                                overrides=ctx.base("reft"))
        stage = tracr_finetune(cfg, store, ctx.runtime, say=ctx.say, kind="tracr-reft")
        return Outcome(stage.run.id, stage.reused, stage.result)
    raise ValueError(f"unknown tracr stage {node.stage}")


def load_model(run: Run) -> nn.Module:
    """A tracr run's model: the compiled architecture with the run's weights, in eval mode."""
    return compiled_of(run).model().eval()
