"""How a PCFG spec becomes a run graph, and how each of its nodes runs.

Per seed and prior one pretraining; under it one fine-tuning per (lr, C_Tr) — and, where a spec varies the
fine-tuning protocol (the paper's App. E data interventions), per fraction of pretraining data mixed in
(``mix_pt``) and per randFT or not (``randft``); after a fine-tuning the selected analyses (prune, probe, reft,
jailbreak). The never-had-it model — the Scr.+FT pretraining: the root's recipe with the whole
operand prior on O_FT — is a node of its own (``baseline``), so it trains while the fine-tunings do; it is the
negative control of every signature: reFT's Scr.+FT baseline starts from it, and wherever the spec prunes or
probes, it is pruned and probed the same way (nodes with ``model=never``), for the spec's (task, O_PT, O_FT).
"""

from __future__ import annotations

from typing import Any

from wrapperlab.analysis.probing import ProbeConfig
from wrapperlab.analysis.pruning import PruneConfig
from wrapperlab.errors import ConfigError
from wrapperlab.runs.profiles import profile as load_profile
from wrapperlab.runs.profiles import validated
from wrapperlab.settings.base import Node, NodeContext, Outcome, add_once, expand_tree, node_key, per_reft_lr
from wrapperlab.settings.pcfg.analyses import jailbreak_run, jailbreak_tokens, probe_run, prune_run
from wrapperlab.settings.pcfg.configs import PretrainRunConfig, finetune_config, pcfg_lr, pretrain_config, reft_config
from wrapperlab.settings.pcfg.reft import never_pt_config, run_reft, run_scrft
from wrapperlab.settings.pcfg.stages import finetune, finetune_many, pretrain

AXES = ("prior", "blocks", "pt_iters", "lr", "c_tr", "mix_pt", "randft")
#: axes a spec may leave out: ``blocks`` (the model's depth, model.n_layers) for localisation across depths,
#: ``pt_iters`` (the pretraining's length, train.iters) for the paper's 50K- vs 200K-iteration tables (6 and 8),
#: and the fine-tuning protocol's data interventions (App. E): ``mix_pt`` (the fraction of each fine-tuning batch
#: drawn from the pretraining mix, E.1) and ``randft`` (true: ask for O_PT, label with O_FT's answer, E.4)
OPTIONAL_AXES = ("blocks", "pt_iters", "mix_pt", "randft")
#: the fine-tuning protocol's axes: a cell's reFT baselines (Scr.+FT) do not depend on them
PROTOCOL_AXES = ("mix_pt", "randft")
#: the axes that make a pretraining: one root (and one never-had-it twin) per combination of their values
ROOT_AXES = ("prior", "blocks", "pt_iters")
ANALYSES = ("prune", "probe", "reft", "jailbreak")
#: the grid point's axes under their config names, per stage
PRETRAIN_NAMES = {"seed": "seed", "prior": "data.prior", "blocks": "model.n_layers", "pt_iters": "train.iters"}
FINETUNE_NAMES = {"seed": "seed", "lr": "train.lr", "c_tr": "data.c_tr", "mix_pt": "data.mix_pt"}
#: what ``randft: true`` sets: questions about O_PT labelled with O_FT's answer (the capability trained "away")
RANDFT_DATA = {"data.ask": "pt", "data.answer": "ft"}
DEFAULT_KS = (0, 1, 2, 3, 5, 10, 15, 20, 50)
#: the ``model`` of a node analysing the never-had-it model (the Scr.+FT pretraining)
NEVER = "never"
#: the ``model`` of a node probing the pretrained model itself (the paper's Fig. 8a: what the probe reads before any
#: fine-tuning, so "the fine-tuned model's probe stays at the pretrained level" can be read off)
PRETRAINED = "pretrained"


def _baseline(nodes: list[Node], root: Node) -> Node:
    return add_once(nodes, Node(node_key("baseline", root.point), "baseline", root.point, [root.key]))


def expand(spec, profile: str, seeds: int | None = None) -> list[Node]:
    def reft_baseline(name: str, analysis: Any, root: Node, nodes: list[Node]) -> list[str]:
        wants = analysis.baselines is True or "scr+ft" in (analysis.baselines or [])
        return [_baseline(nodes, root).key] if name == "reft" and wants else []

    roots = tuple(a for a in ROOT_AXES if a in spec.axes_for(profile))  # one pretraining per value
    nodes = _with_scrft(per_reft_lr(expand_tree(spec, profile, seeds, AXES, "pretrain", roots,
                                                 lambda seed, shared: {"seed": seed, **shared}, reft_baseline), pcfg_lr))
    controls = {name: a for name, a in spec.analyses_for(profile).items() if name in ("prune", "probe")}
    for root in [n for n in nodes if n.stage == "pretrain"] if controls else []:
        baseline = _baseline(nodes, root)
        point = {**root.point, "model": NEVER}
        nodes += [Node(node_key(name, point), name, point, [baseline.key], analysis.model_dump())
                  for name, analysis in controls.items()]
        if "probe" in controls:
            point = {**root.point, "model": PRETRAINED}
            nodes.append(Node(node_key("probe", point), "probe", point, [root.key], controls["probe"].model_dump()))
    return nodes


def _with_scrft(nodes: list[Node]) -> list[Node]:
    """Scr.+FT as a node of its own between the never-had-it model and the reFTs that compare with it: one run per
    (seed, prior, reFT lr) — every C_Tr cell's reFT shares it — trained once instead of by whichever reFT asks
    first while the others wait on its lock."""
    out: list[Node] = []
    for node in nodes:
        baseline = next((p for p in node.parents if p.startswith("baseline ")), None) if node.stage == "reft" else None
        if baseline is not None:
            point = {k: v for k, v in node.point.items()
                     if k not in ("c_tr", *PROTOCOL_AXES) and (k != "lr" or "reft_lr" not in node.point)}
            scrft = add_once(out, Node(node_key("scrft", point), "scrft", point, [baseline], node.options))
            node = Node(node.key, node.stage, node.point, [*node.parents, scrft.key], node.options)
        out.append(node)
    return out


def _stage_outcome(stage) -> Outcome:
    return Outcome(stage.run.id, stage.reused, stage.result)


def _finetune_overrides(node: Node, ctx: NodeContext) -> dict[str, Any]:
    """The fine-tuning config's overrides at a grid point (a reFT-like node's point holds its fine-tuning's)."""
    return {**ctx.overrides("finetune", node.point, FINETUNE_NAMES), **(RANDFT_DATA if node.point.get("randft") else {})}


def _finetune_kind(node: Node) -> str:
    return "randft" if node.point.get("randft") else "finetune"


def _reft_overrides(node: Node, ctx: NodeContext) -> dict[str, Any] | None:
    overrides = {**ctx.base("reft"), **({"train.lr": node.point["reft_lr"]} if "reft_lr" in node.point else {})}
    return overrides or None


#: stages whose ready nodes may train as one stack (runtime.stack): the grid's fine-tunings share an architecture
#: and a step count; pretrainings and reFT-like runs (which stop at their own step) train alone
STACK_STAGES = ("finetune",)


def run_group(group: list[Node], ctxs: list[NodeContext]) -> list[Outcome]:
    """Fine-tuning nodes computed together (training/stacked.py), each outcome as :func:`run_node` gives it."""
    if any(node.stage not in STACK_STAGES for node in group):
        raise ValueError(f"only {STACK_STAGES} nodes run as a group")
    ctx, outcomes = ctxs[0], {}
    for kind in dict.fromkeys(_finetune_kind(node) for node in group):  # one stack per run kind (randFT apart)
        mine = [i for i, node in enumerate(group) if _finetune_kind(node) == kind]
        cfgs = [finetune_config(ctxs[i].parent.run_id, ctxs[i].profile, _finetune_overrides(group[i], ctxs[i]))
                for i in mine]
        stages = finetune_many(cfgs, ctx.store, ctx.runtime, ctx.say, kind=kind)
        outcomes.update({i: _stage_outcome(stage) for i, stage in zip(mine, stages)})
    return [outcomes[i] for i in range(len(group))]


def _root_key(point: dict[str, Any]) -> tuple:
    """The pretraining a grid point descends from: its seed and root-axis values."""
    return (point["seed"], *(point.get(a) for a in ROOT_AXES))


#: the parent id a config is checked against before its parent exists (no stage reads the parent to build one)
PLACEHOLDER_PARENT = "pretrain-000000000000"


def check_nodes(nodes: list[Node], ctx: NodeContext) -> None:
    """Build every training config the nodes will build (pretraining, fine-tuning, reFT), with placeholder parents:
    a bad value anywhere in the spec is a ConfigError before the first node runs."""
    tasks: dict[tuple, tuple[str, ...]] = {}  # a pretraining's tasks, by (seed, root axes): what a jailbreak needs
    for node in nodes:
        if not isinstance(node.point.get("randft", False), bool):  # "maybe" would count as randFT
            raise ConfigError("axes.randft", node.point["randft"], "true or false")
        if node.stage == "pretrain":
            cfg = pretrain_config(ctx.profile, ctx.overrides("pretrain", node.point, PRETRAIN_NAMES))
            tasks[_root_key(node.point)] = cfg.data.tasks
        elif node.stage == "jailbreak":  # expand lists a pretraining before the nodes under it
            ft = finetune_config(PLACEHOLDER_PARENT, ctx.profile, _finetune_overrides(node, ctx)).data
            jailbreak_tokens(tasks[_root_key(node.point)], ft, "analyses.jailbreak", "jailbreak")
        elif node.stage in ("finetune", "reft"):  # a reFT node's point holds its fine-tuning's
            ft = finetune_config(PLACEHOLDER_PARENT, ctx.profile, _finetune_overrides(node, ctx))
            if node.stage == "reft":
                reft_config(ft, PLACEHOLDER_PARENT, ctx.profile, _reft_overrides(node, ctx))


def run_node(node: Node, ctx: NodeContext) -> Outcome:
    store, parent, seed = ctx.store, ctx.parent, node.point["seed"]
    if node.stage == "pretrain":
        cfg = pretrain_config(ctx.profile, ctx.overrides("pretrain", node.point, PRETRAIN_NAMES))
        return _stage_outcome(pretrain(cfg, store, ctx.runtime, ctx.say))
    if node.stage == "baseline":  # Scr.+FT's pretraining: the root's config, all prior mass on O_FT
        root_cfg = validated(PretrainRunConfig, store.resolve(parent.run_id).config())
        operand = finetune_config(parent.run_id, ctx.profile, ctx.base("finetune")).data.operand
        return _stage_outcome(pretrain(never_pt_config(root_cfg, operand), store, ctx.runtime, ctx.say))
    if node.stage == "finetune":
        cfg = finetune_config(parent.run_id, ctx.profile, _finetune_overrides(node, ctx))
        return _stage_outcome(finetune(cfg, store, ctx.runtime, ctx.say, kind=_finetune_kind(node)))
    if node.stage == "scrft":  # the fine-tuning of this seed and lr stands in for every C_Tr cell's (see reft.py)
        finetuned = finetune_config(parent.run_id, ctx.profile, _finetune_overrides(node, ctx))
        return _stage_outcome(run_scrft(store, finetuned, store.resolve(parent.run_id), ctx.profile,
                                        _reft_overrides(node, ctx), ctx.runtime, ctx.say))
    # a model that was never fine-tuned (never-had-it, pretrained) is analysed for the pair the spec fine-tunes on
    pair = finetune_config(parent.run_id, ctx.profile, ctx.base("finetune")).data \
        if node.point.get("model") in (NEVER, PRETRAINED) else None
    if node.stage == "prune":
        ks = tuple(node.options.get("ks") or DEFAULT_KS)
        art = prune_run(store, parent.run_id, PruneConfig(ks=ks), n_eval=node.options.get("n_eval") or 1000,
                        seed=seed, say=ctx.say, pair=pair, device=ctx.runtime.device)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "probe":
        iters = node.options.get("iters") or load_profile(ctx.profile).get("probe", {}).get("iters", 4000)
        art = probe_run(store, parent.run_id, ProbeConfig(iters=iters), seed=seed, say=ctx.say, pair=pair,
                        device=ctx.runtime.device)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "jailbreak":
        art = jailbreak_run(store, parent.run_id, n_eval=node.options.get("n_eval") or 1000, seed=seed, say=ctx.say,
                            device=ctx.runtime.device)
        return Outcome(parent.run_id, art.reused, art.data)
    if node.stage == "reft":
        result = run_reft(store, parent.run_id, ctx.profile, _reft_overrides(node, ctx),
                          baselines=node.options.get("baselines", False), runtime=ctx.runtime, say=ctx.say)
        return Outcome(result.curves["reft"].run.id, all(c.reused for c in result.curves.values()), result.summary())
    raise ValueError(f"unknown pcfg stage {node.stage}")
