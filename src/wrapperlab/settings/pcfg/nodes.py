"""How a PCFG spec becomes a run graph, and the table of its stages (:data:`STAGES`).

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
from wrapperlab.data.finetune_data import FinetuneDataConfig
from wrapperlab.errors import ConfigError
from wrapperlab.runs.profiles import profile as load_profile
from wrapperlab.runs.profiles import validated
from wrapperlab.runs.stage import Lab
from wrapperlab.settings.base import Stage
from wrapperlab.settings.graph import PLANNED, Node, NodeContext, Outcome, Tree, add_once, expand_tree, node_key
from wrapperlab.settings.pcfg.analyses import jailbreak_run, jailbreak_tokens, probe_run, prune_run
from wrapperlab.settings.pcfg.configs import RANDFT_DATA, finetune_config, pcfg_lr, pretrain_config, reft_config
from wrapperlab.settings.pcfg.reft import never_pt_config, reft_curves, scrft_config
from wrapperlab.settings.pcfg.results import RESULTS
from wrapperlab.settings.pcfg.stages import finetune, finetune_many, pretrain
from wrapperlab.settings.reft_options import per_reft_lr

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
#: the grid point's axes under their config names, per stage
PRETRAIN_NAMES = {"seed": "seed", "prior": "data.prior", "blocks": "model.n_layers", "pt_iters": "train.iters"}
FINETUNE_NAMES = {"seed": "seed", "lr": "train.lr", "c_tr": "data.c_tr", "mix_pt": "data.mix_pt"}
#: the ``model`` of a node analysing the never-had-it model (the Scr.+FT pretraining)
NEVER = "never"
#: the ``model`` of a node probing the pretrained model itself (the paper's Fig. 8a: what the probe reads before any
#: fine-tuning, so "the fine-tuned model's probe stays at the pretrained level" can be read off)
PRETRAINED = "pretrained"


# -- the graph -------------------------------------------------------------------------------------------


def _baseline(nodes: list[Node], root: Node) -> Node:
    return add_once(nodes, Node(node_key("baseline", root.point), "baseline", root.point, [root.key]))


def expand(spec, profile: str, seeds: int | None = None) -> list[Node]:
    def extra_parents(name: str, options: Any, root: Node, nodes: list[Node]) -> list[str]:
        """A reFT with Scr.+FT waits for the never-had-it model; a jailbreak reads its pretraining's tasks."""
        if name == "reft" and options.wants("scr+ft"):
            return [_baseline(nodes, root).key]
        return [root.key] if name == "jailbreak" else []

    roots = tuple(a for a in ROOT_AXES if a in spec.axes_for(profile))  # one pretraining per value
    tree = Tree(AXES, "pretrain", roots, extra_parents=extra_parents)
    nodes = _with_scrft(per_reft_lr(expand_tree(spec, profile, seeds, tree), pcfg_lr))
    controls = {name: a for name, a in spec.analyses_for(profile).items() if name in ("prune", "probe")}
    for root in [n for n in nodes if n.stage == "pretrain"] if controls else []:
        baseline = _baseline(nodes, root)
        point = {**root.point, "model": NEVER}
        nodes += [Node(node_key(name, point), name, point, [baseline.key], options)
                  for name, options in controls.items()]
        if "probe" in controls:
            point = {**root.point, "model": PRETRAINED}
            nodes.append(Node(node_key("probe", point), "probe", point, [root.key], controls["probe"]))
    return nodes


def _with_scrft(nodes: list[Node]) -> list[Node]:
    """Scr.+FT as a node of its own between the never-had-it model and the reFTs that compare with it: one run per
    (seed, prior, reFT lr) — every C_Tr cell's reFT shares it — trained once instead of by whichever reFT asks
    first while the others wait on its lock."""
    stage_of = {n.key: n.stage for n in nodes}
    out: list[Node] = []
    for node in nodes:
        baseline = next((p for p in node.parents if stage_of[p] == "baseline"), None) if node.stage == "reft" else None
        if baseline is not None:
            point = {k: v for k, v in node.point.items()
                     if k not in ("c_tr", *PROTOCOL_AXES) and (k != "lr" or "reft_lr" not in node.point)}
            scrft = add_once(out, Node(node_key("scrft", point), "scrft", point, [baseline], node.options))
            stage_of[scrft.key] = "scrft"
            node = Node(node.key, node.stage, node.point, [*node.parents, scrft.key], node.options)
        out.append(node)
    return out


# -- configs: each from the node and its parents' outcomes (planned ones while a spec is checked) ---------------


def _finetune_overrides(node: Node, ctx: NodeContext) -> dict[str, Any]:
    """The fine-tuning config's overrides at a grid point (a reFT-like node's point holds its fine-tuning's)."""
    randft = node.point.get("randft", False)
    if not isinstance(randft, bool):  # "maybe" would count as randFT
        raise ConfigError("axes.randft", randft, "true or false")
    return {**ctx.overrides("finetune", node.point, FINETUNE_NAMES), **(RANDFT_DATA if randft else {})}


def _finetune_kind(node: Node) -> str:
    return "randft" if node.point.get("randft") else "finetune"


def _reft_overrides(node: Node, ctx: NodeContext) -> dict[str, Any] | None:
    overrides = {**ctx.base("reft"), **({"train.lr": node.point["reft_lr"]} if "reft_lr" in node.point else {})}
    return overrides or None


def _spec_pair(ctx: NodeContext) -> FinetuneDataConfig:
    """The (task, O_PT, O_FT) the spec fine-tunes on: what a model that was never fine-tuned is analysed for."""
    return finetune_config(PLANNED, ctx.profile, ctx.base("finetune")).data


def _pretrain_config(node: Node, ctx: NodeContext):
    return pretrain_config(ctx.profile, ctx.overrides("pretrain", node.point, PRETRAIN_NAMES))


def _baseline_config(node: Node, ctx: NodeContext):
    """Scr.+FT's pretraining: the root's config, all prior mass on O_FT."""
    return never_pt_config(ctx.parent.config, _spec_pair(ctx).operand)


def _finetune_config(node: Node, ctx: NodeContext):
    return finetune_config(ctx.parent.run_id, ctx.profile, _finetune_overrides(node, ctx))


def _scrft_config(node: Node, ctx: NodeContext):
    """Scr.+FT from the never-had-it model: the fine-tuning of this seed and lr stands in for every C_Tr cell's."""
    finetuned = finetune_config(ctx.parent.run_id, ctx.profile, _finetune_overrides(node, ctx))
    return scrft_config(finetuned, ctx.parent.run_id, ctx.profile, _reft_overrides(node, ctx))


def _reft_config(node: Node, ctx: NodeContext):
    return reft_config(ctx.parent.config, ctx.parent.run_id, ctx.profile, _reft_overrides(node, ctx))


def _pair(node: Node, ctx: NodeContext) -> FinetuneDataConfig | None:
    """A model that was never fine-tuned (never-had-it, pretrained) is analysed for the pair the spec fine-tunes on."""
    return _spec_pair(ctx) if node.point.get("model") in (NEVER, PRETRAINED) else None


def _prune_config(node: Node, ctx: NodeContext) -> PruneConfig:
    return validated(PruneConfig, {"ks": node.options.ks}, "analyses.prune")


def _probe_config(node: Node, ctx: NodeContext) -> ProbeConfig:
    iters = node.options.iters or load_profile(ctx.profile).get("probe", {}).get("iters")
    return validated(ProbeConfig, {"iters": iters} if iters else {}, "analyses.probe")


def _jailbreak_config(node: Node, ctx: NodeContext) -> list[str]:
    """The tokens asked through (checked: a counting fine-tuning whose pretraining had the jailbreak tasks)."""
    return jailbreak_tokens(ctx.parents[1].config.data.tasks, ctx.parent.config.data, "analyses.jailbreak", "jailbreak")


# -- runs ----------------------------------------------------------------------------------------------------


def _stage_outcome(node: Node, stage, cfg) -> Outcome:
    return Outcome(stage.run.id, stage.reused, RESULTS[node.stage].from_json(stage.result, stage.run.id), cfg)


def _run_pretrain(node: Node, ctx: NodeContext, cfg) -> Outcome:
    return _stage_outcome(node, pretrain(cfg, ctx.store, ctx.runtime, ctx.say), cfg)


def _run_finetune(node: Node, ctx: NodeContext, cfg) -> Outcome:
    return _stage_outcome(node, finetune(cfg, ctx.store, ctx.runtime, ctx.say, kind=_finetune_kind(node)), cfg)


def _stack_finetunes(nodes: list[Node], ctxs: list[NodeContext], cfgs: list) -> list[Outcome]:
    """Fine-tuning nodes computed together (training/stacked.py), each outcome as :func:`_run_finetune` gives it:
    one stack per run kind (randFT apart)."""
    ctx, outcomes = ctxs[0], {}
    for kind in dict.fromkeys(_finetune_kind(node) for node in nodes):
        mine = [i for i, node in enumerate(nodes) if _finetune_kind(node) == kind]
        stages = finetune_many([cfgs[i] for i in mine], ctx.store, ctx.runtime, ctx.say, kind=kind)
        outcomes.update({i: _stage_outcome(nodes[i], stage, cfgs[i]) for i, stage in zip(mine, stages)})
    return [outcomes[i] for i in range(len(nodes))]


def _run_scrft(node: Node, ctx: NodeContext, cfg) -> Outcome:
    return _stage_outcome(node, finetune(cfg, ctx.store, ctx.runtime, ctx.say, kind="scrft"), cfg)


def _run_reft(node: Node, ctx: NodeContext, cfg) -> Outcome:
    result = reft_curves(ctx.store, ctx.store.resolve(ctx.parent.run_id), cfg, node.options.baselines, ctx.runtime,
                         ctx.say)
    return Outcome(result.curves["reft"].run.id, all(c.reused for c in result.curves.values()), result.summary(), cfg)


def _lab(ctx: NodeContext) -> Lab:
    return Lab(ctx.store, ctx.say, ctx.runtime.device)


def _analysed(node: Node, art, ctx: NodeContext, cfg) -> Outcome:
    return Outcome(ctx.parent.run_id, art.reused, RESULTS[node.stage].from_json(art.data, str(art.json_path)), cfg)


def _run_prune(node: Node, ctx: NodeContext, cfg: PruneConfig) -> Outcome:
    art = prune_run(_lab(ctx), ctx.parent.run_id, cfg, node.options.n_eval, node.point["seed"], _pair(node, ctx))
    return _analysed(node, art, ctx, cfg)


def _run_probe(node: Node, ctx: NodeContext, cfg: ProbeConfig) -> Outcome:
    art = probe_run(_lab(ctx), ctx.parent.run_id, cfg, seed=node.point["seed"], pair=_pair(node, ctx))
    return _analysed(node, art, ctx, cfg)


def _run_jailbreak(node: Node, ctx: NodeContext, cfg) -> Outcome:
    art = jailbreak_run(_lab(ctx), ctx.parent.run_id, n_eval=node.options.n_eval, seed=node.point["seed"])
    return _analysed(node, art, ctx, cfg)


#: every stage of a PCFG graph. Ranks: roots first, then what unblocks others (the never-had-it model and Scr.+FT
#: run beside the fine-tunings), then reFT, then the short analyses. Fine-tunings stack (they share an architecture
#: and a step count); pretrainings and reFT-like runs (which stop at their own step) train alone.
STAGES = {
    "pretrain": Stage(_run_pretrain, _pretrain_config, RESULTS["pretrain"], rank=0),
    "baseline": Stage(_run_pretrain, _baseline_config, RESULTS["baseline"], rank=1),
    "scrft": Stage(_run_scrft, _scrft_config, RESULTS["scrft"], rank=1),
    "finetune": Stage(_run_finetune, _finetune_config, RESULTS["finetune"], rank=2, stack=_stack_finetunes),
    "reft": Stage(_run_reft, _reft_config, RESULTS["reft"], rank=3),
    "prune": Stage(_run_prune, _prune_config, RESULTS["prune"], rank=4),
    "probe": Stage(_run_probe, _probe_config, RESULTS["probe"], rank=4),
    "jailbreak": Stage(_run_jailbreak, _jailbreak_config, RESULTS["jailbreak"], rank=4),
}
