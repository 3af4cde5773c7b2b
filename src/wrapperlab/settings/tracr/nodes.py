"""How a Tracr spec becomes a run graph, and how each of its nodes runs.

One compilation shared by every seed (a compiled program does not depend on one); under it one fine-tuning per
(seed, lr, C_Tr[, noise]); after a fine-tuning the selected analyses (attention, single-weight prune, reft).
"""

from __future__ import annotations

from torch import nn

from wrapperlab.errors import ConfigError
from wrapperlab.models.tracr.programs import program
from wrapperlab.runs.store import Run
from wrapperlab.settings.base import Node, NodeContext, Outcome, expand_tree
from wrapperlab.settings.tracr.stages import (
    attention_run,
    compile_config,
    compile_stage,
    compiled_of,
    finetune_config_for,
    reft_config_for,
    tracr_finetune,
    tracr_finetune_config,
    tracr_reft_config,
    weight_search_run,
)

AXES = ("lr", "c_tr", "noise_std")
ANALYSES = ("prune", "attention", "reft")
FINETUNE_NAMES = {"seed": "seed", "lr": "train.lr", "c_tr": "data.c_tr", "noise_std": "noise_std"}


def expand(spec, profile: str, seeds: int | None = None) -> list[Node]:
    return expand_tree(spec, profile, seeds, AXES, "compile", (), lambda seed, shared: {"program": spec.program})


#: the parent id a spec's check builds configs with (no run exists yet; only the values are checked)
PLACEHOLDER_PARENT = "tracr-compile-check"


def check_nodes(nodes: list[Node], ctx: NodeContext) -> None:
    """Build every config the nodes will build (compilation, fine-tuning, reFT) before the first node runs, so a bad
    value anywhere in a Tracr spec is one ConfigError before JAX compiles anything. ``data.max_len`` is held to the
    length the spec's program compiles to, as loading the compiled model will."""
    max_len = compile_config(ctx.spec.program).max_seq_len or program(ctx.spec.program).max_seq_len
    for node in nodes:
        if node.stage not in ("finetune", "reft"):  # a reFT node's point holds its fine-tuning's
            continue
        ft = finetune_config_for(PLACEHOLDER_PARENT, ctx.spec.program, ctx.profile,
                                 ctx.overrides("finetune", node.point, FINETUNE_NAMES))
        if ft.data.max_len > max_len:
            raise ConfigError("finetune: data.max_len", ft.data.max_len, f"at most {ctx.spec.program}'s compiled "
                                                                         f"length {max_len}")
        if node.stage == "reft":
            reft_config_for(PLACEHOLDER_PARENT, ft, ctx.profile, overrides=ctx.base("reft"))


def run_node(node: Node, ctx: NodeContext) -> Outcome:
    store, parent = ctx.store, ctx.parent
    if node.stage == "compile":
        stage = compile_stage(compile_config(ctx.spec.program), store, say=ctx.say)
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
        cfg = tracr_reft_config(store.resolve(parent.run_id), ctx.profile, overrides=ctx.base("reft"))
        stage = tracr_finetune(cfg, store, ctx.runtime, say=ctx.say, kind="tracr-reft")
        return Outcome(stage.run.id, stage.reused, stage.result)
    raise ValueError(f"unknown tracr stage {node.stage}")


def load_model(run: Run) -> nn.Module:
    """A tracr run's model: the compiled architecture with the run's weights, in eval mode."""
    return compiled_of(run).model().eval()
