"""How a stories spec becomes a run graph, and the table of its stages (:data:`STAGES`).

Per seed: the pretraining and (for reFT baselines or probes) the "not in PT" control, each a root; one deletion
per (protocol, lr); reFT per selected deletion and corpus (and from the control with baselines); probes of the
pretrained model, the control and the selected deletions.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import Field
from torch import nn

from wrapperlab.runs.store import Run, RunStore, lineage_root
from wrapperlab.settings.base import Stage
from wrapperlab.settings.graph import Node, NodeContext, Outcome, node_key, selected
from wrapperlab.settings.spec import AnalysisOptions
from wrapperlab.settings.stories.results import StoryProbeRecord, StoryRunResult
from wrapperlab.settings.stories.stages import (
    STORY_KINDS,
    Parent,
    check_real_data,
    child_config,
    delete_parts,
    load_story_model,
    pretrain_story_config,
    probe_story_run,
    reft_data,
    stories_stage,
)

AXES = ("protocol", "lr")


class StoriesReftOptions(AnalysisOptions):
    """reFT of the selected deletions (and, with ``baselines``, of the not-in-PT control) on each corpus."""

    baselines: bool | list[Literal["scr+ft", "scr"]] = Field(
        False, description="also reFT the not-in-PT control (the never-had-it baseline)")
    corpora: list[Literal["twist", "mixed"]] = Field(
        ["twist"], description="Twist-only stories (the paper) and/or a truly labelled Twist-rich mix")
    mixed_when: dict[str, list[Any]] | None = Field(
        None, description="where the mixed corpus runs (default: wherever reft runs)")


ANALYSES = {"probe": AnalysisOptions, "reft": StoriesReftOptions}


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
                nodes.append(Node(node_key("probe", point), "probe", point, [parent.key], probe))
        for protocol, lr in itertools.product(axes["protocol"], axes["lr"]):
            point = {"seed": seed, "protocol": protocol, "lr": lr}
            ft = Node(node_key("finetune", point), "finetune", point, [root.key])
            nodes.append(ft)
            if probe is not None and selected(probe.when, point):
                nodes.append(Node(node_key("probe", point), "probe", point, [ft.key], probe))
            if reft is not None and selected(reft.when, point):
                mixed_here = reft.mixed_when is None or selected(reft.mixed_when, point)
                # the pretraining as a second parent: a reFT's corpus is its root's
                nodes += [Node(node_key("reft", {**point, "corpus": c}), "reft", {**point, "corpus": c},
                               [ft.key, root.key], reft) for c in reft.corpora if c != "mixed" or mixed_here]
        if reft is not None and reft.baselines and control is not None:
            nodes += [Node(node_key("reft", p), "reft", p, [control.key], reft)
                      for p in ({"seed": seed, "from": "control", "corpus": c} for c in reft.corpora)]
    return nodes


# -- configs: each from the node and its parents' outcomes (planned ones while a spec is checked) ---------------


def _root_config(stage: str):
    """A pretraining (or, ``control``: the same on a corpus without Twist); a real corpus is checked to hold what a run
    measures before a run directory exists."""
    def config(node: Node, ctx: NodeContext):
        cfg = pretrain_story_config(ctx.profile, ctx.base("pretrain"), seed=node.point["seed"],
                                    control=stage == "control")
        if stage == "pretrain":
            check_real_data(cfg)
        return cfg

    return config


def _finetune_config(node: Node, ctx: NodeContext):
    """A deletion of the pretrained parent under the node's protocol at its lr."""
    data, over = delete_parts(node.point["protocol"], node.point["lr"], ctx.base("finetune"))
    return child_config(ctx.parent.config, Parent(ctx.parent.run_id, ctx.parent.config.seed), ctx.profile, "finetune",
                        data, over)


def _reft_config(node: Node, ctx: NodeContext):
    """reFT of a deletion (its root: the second parent) or of the control (a root itself) on the node's corpus."""
    root = ctx.parents[-1].config
    return child_config(root, Parent(ctx.parent.run_id, ctx.parent.config.seed), ctx.profile, "reft",
                        reft_data(node.point["corpus"], ctx.profile), ctx.base("reft"))


# -- runs ----------------------------------------------------------------------------------------------------


def _run(node: Node, ctx: NodeContext, cfg) -> Outcome:
    stage = stories_stage(cfg, ctx.store, ctx.runtime, ctx.say)
    return Outcome(stage.run.id, stage.reused, StoryRunResult.from_json(stage.result, stage.run.id), cfg)


def _run_probe(node: Node, ctx: NodeContext, cfg) -> Outcome:
    art = probe_story_run(ctx.store, ctx.parent.run_id, ctx.profile, seed=node.point["seed"], say=ctx.say)
    return Outcome(ctx.parent.run_id, art.reused, StoryProbeRecord.from_json(art.data, str(art.json_path)))


#: every stage of a stories graph: the roots first, then the deletions, the reFTs and the probes
STAGES = {
    "pretrain": Stage(_run, _root_config("pretrain"), StoryRunResult, rank=0),
    "control": Stage(_run, _root_config("control"), StoryRunResult, rank=0),
    "finetune": Stage(_run, _finetune_config, StoryRunResult, rank=1),
    "reft": Stage(_run, _reft_config, StoryRunResult, rank=3),
    "probe": Stage(_run_probe, result=StoryProbeRecord, rank=4),
}


def tokenizer_of(run: Run):
    """The tokenizer of a story run (its pretraining root's) and the special tokens a Hugging Face loader needs."""
    from wrapperlab.data.stories.tokenizer import END, PAD, load_tokenizer

    root = lineage_root(run, "stories-pretrain", via=STORY_KINDS)
    return load_tokenizer(root.path / "tokenizer.json"), {"eos_token": END, "pad_token": PAD}


def load_model(run: Run) -> nn.Module:
    """A story run's model (its tokenizer and judge: :func:`load_story_model`)."""
    return load_story_model(RunStore(run.path.parent), run)[0]
