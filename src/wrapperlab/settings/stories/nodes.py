"""How a stories spec becomes a run graph, and how each of its nodes runs.

Per seed: the pretraining and (for reFT baselines or probes) the "not in PT" control, each a root; one deletion
per (protocol, lr); reFT per selected deletion and corpus (and from the control with baselines); probes of the
pretrained model, the control and the selected deletions.
"""

from __future__ import annotations

import itertools

from torch import nn

from wrapperlab.runs.store import Run, RunStore, lineage_root
from wrapperlab.settings.base import Node, NodeContext, Outcome, node_key, selected
from wrapperlab.settings.stories.stages import (
    STORY_KINDS,
    check_real_data,
    child_config,
    delete_config,
    delete_parts,
    load_story_model,
    pretrain_story_config,
    probe_story_run,
    reft_data,
    reft_story_config,
    stories_stage,
)

#: stands for a parent run that does not exist yet while a spec is checked
PLACEHOLDER_PARENT = "stories-pretrain-000000000000"

AXES = ("protocol", "lr")
ANALYSES = ("probe", "reft")


def expand(spec, profile: str, seeds: int | None = None) -> list[Node]:
    axes, analyses = spec.axes_for(profile), spec.analyses_for(profile)
    reft, probe = analyses.get("reft"), analyses.get("probe")
    nodes: list[Node] = []
    for seed in spec.seeds_for(profile, seeds):
        root = Node(node_key("pretrain", {"seed": seed}), "pretrain", {"seed": seed})
        nodes.append(root)
        control = None
        if probe is not None or (reft is not None and reft.baselines):
            control = Node(node_key("control", {"seed": seed}), "control", {"seed": seed})
            nodes.append(control)
        if probe is not None:
            for model, parent in (("pretrained", root), ("control", control)):
                point = {"seed": seed, "model": model}
                nodes.append(Node(node_key("probe", point), "probe", point, [parent.key]))
        for protocol, lr in itertools.product(axes["protocol"], axes["lr"]):
            point = {"seed": seed, "protocol": protocol, "lr": lr}
            ft = Node(node_key("finetune", point), "finetune", point, [root.key])
            nodes.append(ft)
            if probe is not None and selected(probe.when, point):
                nodes.append(Node(node_key("probe", point), "probe", point, [ft.key]))
            if reft is not None and selected(reft.when, point):
                mixed_here = reft.mixed_when is None or selected(reft.mixed_when, point)
                nodes += [Node(node_key("reft", {**point, "corpus": c}), "reft", {**point, "corpus": c}, [ft.key])
                          for c in reft.corpora if c != "mixed" or mixed_here]
        if reft is not None and reft.baselines and control is not None:
            nodes += [Node(node_key("reft", p), "reft", p, [control.key])
                      for p in ({"seed": seed, "from": "control", "corpus": c} for c in reft.corpora)]
    return nodes


def check_nodes(nodes: list[Node], ctx: NodeContext) -> None:
    """Build every config the nodes will build — pretrainings, controls, deletions and reFTs (from each seed's
    pretraining config, with a placeholder parent) — and check a real corpus once: a bad value anywhere in a spec is
    a ConfigError before the first node runs, not after the pretrainings."""
    roots: dict[tuple[str, int], object] = {}  # (pretrain | control, seed) -> its config
    for node in nodes:
        seed = node.point["seed"]
        if node.stage in ("pretrain", "control"):
            cfg = pretrain_story_config(ctx.profile, ctx.base("pretrain"), seed=seed, control=node.stage == "control")
            roots[node.stage, seed] = cfg
            if node.stage == "pretrain":
                check_real_data(cfg)
        elif node.stage == "finetune":
            data, over = delete_parts(node.point["protocol"], node.point["lr"], ctx.profile, ctx.base("finetune"))
            child_config(roots["pretrain", seed], PLACEHOLDER_PARENT, seed, ctx.profile, "finetune", data, over)
        elif node.stage == "reft":
            root = roots["control" if node.point.get("from") == "control" else "pretrain", seed]
            child_config(root, PLACEHOLDER_PARENT, seed, ctx.profile, "reft",
                         reft_data(node.point["corpus"], ctx.profile), ctx.base("reft"))


def run_node(node: Node, ctx: NodeContext) -> Outcome:
    store, parent, seed = ctx.store, ctx.parent, node.point["seed"]
    if node.stage == "probe":
        art = probe_story_run(store, parent.run_id, ctx.profile, seed=seed, say=ctx.say)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage in ("pretrain", "control"):
        cfg = pretrain_story_config(ctx.profile, ctx.base("pretrain"), seed=seed, control=node.stage == "control")
    elif node.stage == "finetune":
        cfg = delete_config(store, parent.run_id, ctx.profile, node.point["protocol"], node.point["lr"],
                            ctx.base("finetune"))
    elif node.stage == "reft":
        cfg = reft_story_config(store, parent.run_id, ctx.profile, node.point["corpus"], ctx.base("reft"))
    else:
        raise ValueError(f"unknown stories stage {node.stage}")
    stage = stories_stage(cfg, store, ctx.runtime, ctx.say)
    return Outcome(stage.run.id, stage.reused, stage.result)


def tokenizer_of(run: Run):
    """The tokenizer of a story run (its pretraining root's) and the special tokens a Hugging Face loader needs."""
    from wrapperlab.data.stories.tokenizer import END, PAD, load_tokenizer

    root = lineage_root(run, "stories-pretrain", via=STORY_KINDS)
    return load_tokenizer(root.path / "tokenizer.json"), {"eos_token": END, "pad_token": PAD}


def load_model(run: Run) -> nn.Module:
    """A story run's model (its tokenizer and judge: :func:`load_story_model`)."""
    return load_story_model(RunStore(run.path.parent), run)[0]
