"""The PCFG setting's report section: Tables 5 / 7 beside ours, Figs. 5-9 over seeds, the wrapper verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.data.priors import resolve_prior
from wrapperlab.claims import verdicts as V
from wrapperlab.report.figures.single import METRIC_LABELS
from wrapperlab.report.render import Section
from wrapperlab.report.sections.common import (
    ACC_METRICS,
    cell_label,
    finetune_cell,
    ft_curves,
    grid_label,
    groups,
    lr_name,
    operands,
    paper_length,
    paper_row,
    paper_text,
    reft_budget,
    root_label,
    setup_table,
)
from wrapperlab.report.sections.interventions import intervention_claims
from wrapperlab.report.tables import ci_text
from wrapperlab.settings.pcfg.nodes import NEVER, PRETRAINED, PROTOCOL_AXES, ROOT_AXES

#: the axes besides the prior that a claim is read within (never pooled across): depth, pretraining length, and
#: the fine-tuning protocol (PT data mixed in, randFT)
GROUP_AXES = (*ROOT_AXES[1:], *PROTOCOL_AXES)


def _head_rows(nodes: list[dict], store) -> list[list[str]]:
    """The setup table's model and pretraining rows, from the first pretraining run."""
    root = next((n for n in nodes if n["stage"] == "pretrain"), None)
    if root is None:
        return []
    cfg = store.resolve(root["run_id"]).config()
    m, d, t = cfg["model"], cfg["data"], cfg["train"]
    return [["model", f"{m['n_layers']} blocks × d={m['d_model']}, {m['n_heads']} heads, "
                      f"{root['data'].get('params', '?')} parameters"],
            ["pretraining", f"{t['iters']} steps × {t['batch_size']}, lr {t['lr']:g}; tasks "
                            f"{', '.join(d['tasks'])}; windows of {d['window']} terminals"]]


def pcfg_section(rep: dict, paper: dict, store_root: Path, figures: Path) -> tuple[Section, dict]:
    from wrapperlab.report.figures.sweep import behaviour_figure, finetune_curves_figure
    from wrapperlab.runs.store import RunStore

    nodes, kind, store = rep["nodes"], "pcfg", RunStore(store_root)
    task, pt, ft = operands(rep)
    sec = Section(f"{rep['spec']} ({rep['profile']} profile, seeds {sorted({n['point']['seed'] for n in nodes})})")
    summary: dict[str, Any] = {"task": task, "o_pt": pt, "o_ft": ft}
    setup_table(sec, rep, store, kind, _head_rows(nodes, store))
    pts = [n for n in nodes if n["stage"] == "pretrain"]
    acc_pt = mean_ci([n["data"]["accuracy"].get(f"{task}/{pt}") for n in pts])
    acc_ft = mean_ci([n["data"]["accuracy"].get(f"{task}/{ft}") for n in pts])
    summary["pretrained_o_pt"], summary["pretrained_o_ft"] = acc_pt, acc_ft
    texts = []
    longest = max((n["point"]["pt_iters"] for n in pts if "pt_iters" in n["point"]), default=None)
    for key in sorted({root_of(n["point"]) for n in pts}, key=_root_order):  # never pooled across priors or lengths
        mine = [n for n in pts if root_of(n["point"]) == key]
        point, p_a = mine[0]["point"], resolve_prior(mine[0]["point"]["prior"])[0]
        ref = _paper_pretrained(paper, p_a, paper_length(paper, point.get("pt_iters"), longest))
        o_pt = mean_ci([n["data"]["accuracy"].get(f"{task}/{pt}") for n in mine])
        o_ft = mean_ci([n["data"]["accuracy"].get(f"{task}/{ft}") for n in mine])
        label = root_label(point)
        summary.setdefault("pretrained_by_prior", {})[point["prior"] if label == point["prior"] else label] = \
            {"o_pt": o_pt, "o_ft": o_ft}
        texts.append(f"{'prior ' + label} (P_T({pt}) = {p_a:g}): {task} {pt} {ci_text(o_pt)} % (paper "
                     f"{paper_text(ref, 'o_pt')}), {task} {ft} {ci_text(o_ft)} % (paper {paper_text(ref, 'o_ft')})")
    sec.text(f"Pretrained models — {'; '.join(texts)}. Paper values: {paper['source']}.")
    rows, cells, curves, early_by_cell, early_step = [], [], {}, {}, None
    by_root: dict[str, list[dict[str, Any]]] = {}
    for key, group in groups(nodes, "finetune").items():
        point = dict(key)
        ref_row = paper_row(paper, kind, point["lr"], point["c_tr"], resolve_prior(point["prior"])[0],
                            paper_length(paper, point.get("pt_iters"), longest)) if "prior" in point else None
        curves_here = ft_curves(store, group)
        early_step, early_by_cell[key] = _early_by_seed(store, group)
        early = {m: [early_by_cell[key].get(n["point"]["seed"], {}).get(m) for n in group] for m in ACC_METRICS} \
            if early_by_cell[key] else None
        cell, texts = finetune_cell(point, group, kind, ref_row, ACC_METRICS, early)
        extra = grid_label({k: v for k, v in point.items() if k != "prior"})
        prior = str(point.get("prior", "-")) + (f" ({extra})" if extra else "")
        rows.append([prior, lr_name(kind, point["lr"]), f"{point['c_tr']:g}", *texts])
        cells.append(cell)
        by_root.setdefault(root_label({k: v for k, v in point.items() if k in ROOT_AXES}), []).append(cell)
        curves[cell["label"]] = curves_here
    ours = "ours" if not any(f"{m}_early" in c for c in cells for m in ACC_METRICS) \
        else f"ours @{early_step} / end"
    sec.text("After fine-tuning (Table 5 layout): mean ± 95 % CI over seeds; the paper's value after 1K / 10K of its "
             "10K fine-tuning steps in parentheses; ours after 10 % of fine-tuning (where it was evaluated) / at the end.")
    sec.table(["prior", "lr", "C_Tr"] + [f"{m} % {ours} (paper @1K / @10K)"
                                         for m in ("O_PT C_Te=0", "O_PT C_Te=1", "O_FT C_Te=0", "O_FT C_Te=1")], rows)
    summary["finetune"] = cells
    lines = {label: summary.get("pretrained_by_prior", {}).get(label, {}).get("o_pt") for label in by_root}
    sec.figure(behaviour_figure(by_root, figures / f"{rep['spec']}-behaviour.png", lines),
               "Acc O_PT / O_FT after fine-tuning per cell, one panel per pretraining (Fig. 6)")
    sec.figure(finetune_curves_figure(curves, figures / f"{rep['spec']}-ft-curves.png"),
               "accuracy vs fine-tuning step (Figs. 5, 68–75)")
    parts = _pcfg_analyses(sec, rep, paper, figures, summary)
    _table5_claims(sec, nodes, early_by_cell, parts, summary)
    interventions = intervention_claims(sec, nodes, summary)
    if interventions:
        summary.setdefault("claims", []).extend({"where": where, **v.as_dict()} for where, v in interventions)
    return sec, summary


def root_of(point: dict) -> tuple:
    """The pretraining a grid point descends from (its values of the root axes: prior, blocks, pt_iters)."""
    return tuple(point.get(a) for a in ROOT_AXES)


def _root_order(key: tuple) -> tuple:
    """Priors from the most skewed (low) down, then depth and length ascending."""
    prior, *rest = key
    return (-resolve_prior(prior)[0], *(v or 0 for v in rest))


def _paper_pretrained(paper: dict, p_a: float, length: float | None) -> dict:
    """The paper's pretrained accuracies for a prior (and a pretraining length, where the spec varies it)."""
    if length is not None:
        return next((v for k, v in paper.get("pretrained_by_length", {}).get(p_a, {}).items()
                     if abs(float(k) - length) <= 1e-9 * length), {})
    return paper.get("pretrained_by_prior", {}).get(p_a) or (
        paper.get("pretrained", {}) if abs(paper.get("prior", p_a) - p_a) < 1e-9 else {})


def _early_by_seed(store, group: list[dict]) -> tuple[int, dict[int, dict[str, float]]]:
    """The "@1K" analog of a fine-tuning cell: the step at 10 % of its fine-tuning, and each seed's accuracies
    logged there (seeds whose run was not evaluated at that step — ``train.eval_at`` — are left out)."""
    step, out = 0, {}
    for n in group:
        run = store.resolve(n["run_id"])
        step = run.config()["train"]["iters"] // 10
        record = next((m for m in run.metrics() if m["step"] == step), None)
        if record is not None:
            out[n["point"]["seed"]] = {m: record[m] for m in ACC_METRICS if m in record}
    return step, out


def localisation(prune: dict[str, Any] | None, probe: dict[str, Any] | None, k: int = V.PRUNE_K_MAX) -> dict[str, Any]:
    """Where a model's wrapper sits, for one seed: the share of its top-``k`` pruned units in each block, the share in
    the latter half of the blocks (the paper: wrappers are "localizable ... in the latter half of the network"),
    and per block how much better a probe reads count(O_PT) than in the random-init twin."""
    out: dict[str, Any] = {}
    if prune and prune.get("top_units"):
        top = prune["top_units"][:k]
        n_blocks = len(probe["layers"]) - 1 if probe else 1 + max(u["block"] for u in prune["top_units"])
        out["pruned_share"] = [sum(u["block"] == b for u in top) / len(top) for b in range(n_blocks)]
        out["latter_half"] = sum(u["block"] >= n_blocks / 2 for u in top) / len(top)
    if probe:
        acc = probe["accuracy"][next(iter(probe["accuracy"]))]
        out["probe_gain"] = [m - r for m, r in zip(acc["model"][1:], acc["random_init"][1:])]
    return out


def _localisation_row(label: str, prunes: dict[int, dict], probes: dict[int, dict]) -> tuple[list[str], dict]:
    """One table row over seeds: mean share of the top units per block, the latter-half share, the probe gain."""
    per_seed = [localisation(prunes.get(s), probes.get(s)) for s in sorted(set(prunes) | set(probes))]

    def blocks(key: str) -> tuple[str, list[dict]]:
        rows = [d[key] for d in per_seed if key in d]
        if not rows:
            return "-", []
        cis = [mean_ci([r[b] for r in rows if b < len(r)]) for b in range(max(map(len, rows)))]
        return " · ".join(f"B{b + 1} {ci_text(c)}" for b, c in enumerate(cis)), cis

    shares, share_cis = blocks("pruned_share")
    gains, gain_cis = blocks("probe_gain")
    latter = mean_ci([d["latter_half"] for d in per_seed if "latter_half" in d])
    return [label, shares, ci_text(latter), gains], {"pruned_share": share_cis, "latter_half": latter,
                                                      "probe_gain": gain_cis}


def _by_seed(nodes: list[dict]) -> dict[int, dict]:
    return {n["point"]["seed"]: n["data"] for n in nodes}


def _cell_verdicts(seeds: list[int], data: dict[str, Any]) -> tuple[V.Verdict, list[V.Verdict]]:
    """The wrapper verdict of one analysed cell from its per-seed measurements and their negative controls: the
    pretrained model (behaviour), the never-had-it model pruned and probed the same way, the random-init twin
    (probe) and Scr.+FT (reFT)."""
    pt, ft, prune, never_prune = data["pretrain"], data["finetune"], data["prune"], data["never_prune"]
    probe, never_probe, reft = data["probe"], data["never_probe"], data["reft"]
    get = lambda table, seed, fn: fn(table[seed]) if seed in table else None  # noqa: E731
    behaviour = V.behaviour_hidden([get(pt, s, lambda d: d["accuracy"].get(data["pair"])) for s in seeds],
                                   [get(ft, s, lambda d: d["after"]["acc_pt_cte0"]) for s in seeds])
    pruning = V.pruning_revival([get(prune, s, V.prune_gain) for s in seeds],
                                [get(never_prune, s, V.prune_gain) for s in seeds])
    probing = V.probe_readout([get(probe, s, V.probe_best) for s in seeds],
                              [[get(probe, s, lambda d: V.probe_best(d, "random_init")) for s in seeds],
                               [get(never_probe, s, V.probe_best) for s in seeds]])
    speed = V.revival_speed([get(reft, s, lambda d: d["reft"]["steps_to_0.9"]) for s in seeds],
                            [get(reft, s, lambda d: d["scr+ft"]["steps_to_0.9"] if "scr+ft" in d else None)
                             for s in seeds],
                            [reft_budget(reft.get(s, {}).get("reft")) for s in seeds],
                            [reft_budget(reft.get(s, {}).get("scr+ft")) for s in seeds])
    parts = [_worded(v, data["pair"]) for v in (behaviour, pruning, probing, speed)]
    return _worded(V.pcfg_wrapper(behaviour, pruning, probing, speed), data["pair"]), parts


def _worded(verdict: V.Verdict, pair: str) -> V.Verdict:
    """A rule's words for the cell's pretraining task: the rules speak of count(O_PT); the Indexer's is index(O_PT)."""
    task = pair.split("/")[0]
    if task == "count":
        return verdict
    say = lambda text: text.replace("count(O_PT)", f"{task}(O_PT)")  # noqa: E731
    return V.Verdict(say(verdict.claim), verdict.outcome, say(verdict.reason), verdict.numbers)


def _analysed_cells(prunes: dict, probes: dict, refts: dict) -> list[tuple[tuple, Any]]:
    """(cell key, reFT lr or None) for every analysed cell: one entry per reFT lr it was reverse fine-tuned at."""
    out = set()
    for key in refts:
        point = dict(key)
        lr = point.pop("reft_lr", None)
        out.add((tuple(sorted(point.items())), lr))
    with_reft = {cell for cell, _ in out}
    out |= {(key, None) for key in set(prunes) | set(probes) if key not in with_reft}
    return sorted(((cell, lr) for cell, lr in out if "lr" in dict(cell)), key=lambda c: (c[0], str(c[1])))


def _stat_text(verdict: V.Verdict) -> str:
    """Treated vs control means of a rule, in % (over the seeds that have them)."""
    t, c = (mean_ci(verdict.numbers.get(k, [])) for k in ("treated", "control"))
    return f"{ci_text(t)} vs {ci_text(c)}"


def _pcfg_analyses(sec: Section, rep: dict, paper: dict, figures: Path, summary: dict) -> dict[tuple, list[V.Verdict]]:
    """The analysed cells' table, verdicts and figures; returns each cell's signature verdicts by
    (depth and length, prior, lr, C_Tr, reFT lr) for the claims across cells."""
    from wrapperlab.report.figures.sweep import probe_seeds_figure, seeds_figure

    nodes, name = rep["nodes"], rep["spec"]
    task, pt_op, _ = operands(rep)
    prunes, probes, refts = groups(nodes, "prune"), groups(nodes, "probe"), groups(nodes, "reft")
    finetunes = groups(nodes, "finetune")
    root = root_of  # what a pretraining (and its never-had-it twin) is for
    never = {stage: {(*root(n["point"]), n["point"]["seed"]): n["data"] for n in nodes
                     if n["stage"] == stage and n["point"].get("model") == NEVER} for stage in ("prune", "probe")}
    pre_probe = {(*root(n["point"]), n["point"]["seed"]): n["data"] for n in nodes
                 if n["stage"] == "probe" and n["point"].get("model") == PRETRAINED}
    pretrained = {(*root(n["point"]), n["point"]["seed"]): n["data"] for n in nodes if n["stage"] == "pretrain"}
    rows, figs, lines, drawn_cells, by_cell, where = [], [], [], set(), {}, []
    for key, reft_lr in _analysed_cells(prunes, probes, refts):
        point = dict(key)
        reft_key = key if reft_lr is None else tuple(sorted({**point, "reft_lr": reft_lr}.items()))
        ft = finetunes.get(key, [])
        seeds = sorted(n["point"]["seed"] for n in ft)
        prior, mine = point.get("prior"), root(point)
        data = {"pair": f"{task}/{pt_op}", "finetune": _by_seed(ft), "prune": _by_seed(prunes.get(key, [])),
                "probe": _by_seed(probes.get(key, [])), "reft": _by_seed(refts.get(reft_key, [])),
                "pretrain": {k[-1]: d for k, d in pretrained.items() if k[:-1] == mine},
                "never_prune": {k[-1]: d for k, d in never["prune"].items() if k[:-1] == mine},
                "never_probe": {k[-1]: d for k, d in never["probe"].items() if k[:-1] == mine},
                "pretrained_probe": {k[-1]: d for k, d in pre_probe.items() if k[:-1] == mine}}
        wrapper, parts = _cell_verdicts(seeds, data)
        behaviour, pruning, probing, speed = parts
        label = cell_label(point, "pcfg") + ("" if reft_lr is None else f", reFT η {lr_name('pcfg', reft_lr)}")
        never_probe = mean_ci([V.probe_best(d) for d in data["never_probe"].values()])
        random_probe = mean_ci([V.probe_best(d, "random_init") for d in data["probe"].values()])
        pre_probe_ci = mean_ci([V.probe_best(d) for d in data["pretrained_probe"].values()])
        steps = {c: mean_ci([d[c]["steps_to_0.9"] for d in data["reft"].values() if c in d]) for c in ("reft", "scr+ft")}
        rows.append([label, _stat_text(behaviour), _stat_text(pruning),
                     f"{ci_text(mean_ci(probing.numbers['treated']))} (pretrained {ci_text(pre_probe_ci)}) vs "
                     f"{ci_text(random_probe)} / {ci_text(never_probe)}",
                     " vs ".join(ci_text(steps[c], pct=False) for c in ("reft", "scr+ft")), wrapper.outcome])
        summary.setdefault("analysed", []).append({**point, **({} if reft_lr is None else {"reft_lr": reft_lr}),
                                                   "seeds": seeds, "verdict": wrapper.outcome,
                                                   "signatures": {p.claim: p.as_dict() for p in parts}})
        lines.append((label, wrapper, parts))
        by_cell[(_extra(point), prior, point["lr"], point["c_tr"], reft_lr)] = parts
        tag = "-".join([name, *(f"{prefix}{point[a]}" for a, prefix in (("prior", ""), ("blocks", "b"), ("pt_iters", "pt"),
                                                                        ("mix_pt", "mix"), ("randft", "randft"))
                                 if a in point), lr_name("pcfg", point["lr"]), f"ctr{point['c_tr']:g}"])  # one per cell
        drawn = key in drawn_cells  # a cell reverse fine-tuned at several lrs: its pruning and probe figures once
        drawn_cells.add(key)
        if not drawn and (data["prune"] or data["probe"]):
            row, numbers = _localisation_row(cell_label(point, "pcfg"), data["prune"], data["probe"])
            where.append(row)
            summary.setdefault("localisation", []).append({**point, **numbers})
        if key in prunes and not drawn:
            ks = prunes[key][0]["data"]["ks"]
            curves = {METRIC_LABELS[m]: [list(zip(ks, n["data"]["curves"][m])) for n in prunes[key]]
                      for m in ("acc_pt_cte0", "acc_ft_cte1") if m in prunes[key][0]["data"]["curves"]}
            if data["never_prune"]:
                curves["never-had-it model: " + METRIC_LABELS["acc_pt_cte0"]] = [
                    list(zip(d["ks"], d["curves"]["acc_pt_cte0"])) for d in data["never_prune"].values()]
            figs.append((seeds_figure(curves, figures / f"prune-{tag}.png", "units pruned (K)", "accuracy (%)",
                                      f"pruning by pretraining-task saliency, {label}", logx=True),
                         f"pruning curves over seeds, {label}, beside the never-had-it model (Fig. 7)"))
        if key in probes and not drawn:
            others = {"pretrained model (Fig. 8a)": list(data["pretrained_probe"].values()),
                      "never-had-it model": list(data["never_probe"].values())}
            figs.append((probe_seeds_figure([n["data"] for n in probes[key]], figures / f"probe-{tag}.png",
                                            f"linear probes per block, {label}", others),
                         f"probe accuracy per block over seeds, {label}, beside the pretrained model, the never-had-it "
                         "model and the random-init twin (Fig. 8)"))
        if reft_key in refts:
            curves = {c: [n["data"][c]["curve"] for n in refts[reft_key] if c in n["data"]]
                      for c in ("reft", "scr+ft", "scr")}
            rtag = tag if reft_lr is None else f"{tag}-reft{lr_name('pcfg', reft_lr)}"
            figs.append((seeds_figure(curves, figures / f"reft-{rtag}.png", "reFT step", "Acc O_PT, C_Te=0 (%)",
                                      f"reverse fine-tuning vs baselines, {label}", logx=True, threshold=0.9),
                         f"reFT vs Scr.+FT and Scr. over seeds, {label} (Fig. 9)"))
    if rows:
        sec.text("Each analysed cell against its negative controls (mean ± 95 % CI over seeds; rules in "
                 "docs/reproduce.md): the pretrained model (behaviour), the never-had-it model — the Scr.+FT "
                 "pretraining, pruned and probed exactly like the fine-tuned one — and a random-init twin (probe).")
        sec.table(["cell", "Acc O_PT C_Te=0 %: pretrained vs after FT",
                   f"gain from pruning ≤ {V.PRUNE_K_MAX} units %: FT vs never-had-it",
                   "best-block probe %: FT (pretrained) vs random init / never-had-it", "reFT steps to 90 %: reFT vs Scr.+FT",
                   "wrapper"], rows)
    if where:
        sec.text(f"Where the wrapper sits (mean ± 95 % CI over seeds; blocks B1 … after the embeddings). The paper: "
                 f"wrappers are localisable \"in the latter half of the network\" (protocol.md §1.3). Pruned: the share "
                 f"of the top {V.PRUNE_K_MAX} units by pretraining-task saliency in each block; probe: accuracy of a "
                 "count(O_PT) probe after each block minus the random-init twin's.")
        sec.table(["cell", f"top-{V.PRUNE_K_MAX} pruned units per block (share)", "share in the latter half",
                   "probe gain over random init per block"], where)
    for label, wrapper, parts in lines:
        sec.rule(f"{label}: {wrapper.claim}", wrapper.outcome,
                 "; ".join(f"{p.claim} — {p.outcome} ({p.reason})" for p in parts)
                 + f". Paper: {paper['claims'].get('pruning', '-')}; {paper['claims'].get('reft', '-')}")
    for fig in figs:
        sec.figure(*fig)
    return by_cell


def _extra(point: dict) -> tuple:
    """The axes besides the prior (depth, pretraining length, fine-tuning protocol): the claims are read within one
    value of them."""
    return tuple(point.get(a) for a in GROUP_AXES)


def _table5_claims(sec: Section, nodes: list[dict], early_by_cell: dict[tuple, dict[int, dict[str, float]]],
                   parts: dict[tuple, list[V.Verdict]], summary: dict) -> None:
    """The paper's qualitative claims about Table 5 and Figs. 5-9 (docs/reproduce.md, "pcfg-table5"), each where the
    reproduction has the cells it needs (a claim made for several lrs: once per lr), read separately for every depth
    and pretraining length a spec varies (the paper makes the same claims of its 50K-iteration Table 6)."""
    verdicts: list[tuple[str, V.Verdict]] = []
    for extra in sorted({_extra(n["point"]) for n in nodes if n["stage"] == "finetune"}, key=str):
        label = grid_label({a: v for a, v in zip(GROUP_AXES, extra) if v is not None})
        mine = [n for n in nodes if _extra(n["point"]) == extra]
        found = _claims_within(mine, early_by_cell, {k[1:]: v for k, v in parts.items() if k[0] == extra})
        verdicts += [(f"{where}{'; ' + label if label else ''}", verdict) for where, verdict in found]
    if not verdicts:
        return
    sec.text("The paper's claims about Table 5 and Figs. 5–9 (listed with their rules in docs/reproduce.md before the "
             "first run), each against its control:")
    for where, verdict in verdicts:
        sec.rule(f"{verdict.claim} ({where})", verdict.outcome, verdict.reason)
    summary["claims"] = [{"where": where, **verdict.as_dict()} for where, verdict in verdicts]


def _claims_within(nodes: list[dict], early_by_cell: dict[tuple, dict[int, dict[str, float]]],
                   parts: dict[tuple, list[V.Verdict]]) -> list[tuple[str, V.Verdict]]:
    """The claims T1-T8 over nodes of one depth and pretraining length."""
    finetunes = {k: {n["point"]["seed"]: n for n in g} for k, g in groups(nodes, "finetune").items()}
    seeds = sorted({n["point"]["seed"] for n in nodes if n["stage"] == "finetune"})
    lrs = sorted({n["point"]["lr"] for n in nodes if n["stage"] == "finetune"}, key=str)
    priors = {n["point"]["prior"] for n in nodes if n["stage"] == "finetune"}
    fixed = {a: v for n in nodes if n["stage"] == "finetune" for a, v in n["point"].items() if a in GROUP_AXES}

    def key(prior: str, lr: Any, c_tr: float) -> tuple:
        return tuple(sorted({**fixed, "prior": prior, "lr": lr, "c_tr": c_tr}.items()))

    def cell(prior: str, lr: Any, c_tr: float) -> dict[int, dict] | None:
        return finetunes.get(key(prior, lr, c_tr))

    def after(prior, lr, c_tr, metric) -> list[float | None] | None:
        found = cell(prior, lr, c_tr)
        return None if found is None else [found[s]["data"]["after"][metric] if s in found else None for s in seeds]

    def early(prior, lr, c_tr, metric) -> list[float | None] | None:
        found = early_by_cell.get(key(prior, lr, c_tr))
        return [found.get(s, {}).get(metric) for s in seeds] if found else None

    def gap(prior, lr, c_tr) -> list[float | None] | None:
        hi, lo = after(prior, lr, c_tr, "acc_ft_cte1"), after(prior, lr, c_tr, "acc_ft_cte0")
        return None if hi is None or lo is None else [None if a is None or b is None else a - b for a, b in zip(hi, lo)]

    def reft_steps(prior, lr) -> tuple[list, list] | None:
        rows = [n for n in nodes if n["stage"] == "reft" and n["point"].get("prior") == prior
                and n["point"]["lr"] == lr and n["point"]["c_tr"] == 1.0 and n["point"].get("reft_lr") == "M"]
        if not rows:
            return None
        by_seed = {n["point"]["seed"]: n["data"]["reft"] for n in rows}
        return ([by_seed[s]["steps_to_0.9"] if s in by_seed else None for s in seeds],
                [reft_budget(by_seed.get(s)) for s in seeds])

    verdicts: list[tuple[str, V.Verdict]] = []
    for lr in lrs:
        name = lr_name("pcfg", lr)
        if "low" in priors and gap("low", lr, 1.0) and gap("low", lr, 0.0):
            verdicts.append((f"η_{name}", V.correlation_only(gap("low", lr, 1.0), gap("low", lr, 0.0))))
        if {"low", "high"} <= priors and after("high", lr, 0.8, "acc_ft_cte0") and after("low", lr, 0.8, "acc_ft_cte0"):
            verdicts.append((f"η_{name}", V.relevant_capability_generalises(after("high", lr, 0.8, "acc_ft_cte0"),
                                                                            after("low", lr, 0.8, "acc_ft_cte0"))))
        if {"low", "high"} <= priors and after("high", lr, 1.0, "acc_pt_cte0") and after("low", lr, 1.0, "acc_pt_cte0"):
            verdicts.append((f"η_{name}", V.prior_protects(after("high", lr, 1.0, "acc_pt_cte0"),
                                                           after("low", lr, 1.0, "acc_pt_cte0"))))
        high, low = reft_steps("high", lr), reft_steps("low", lr)
        if high and low:
            verdicts.append((f"η_{name}, reFT η_M", V.prior_speeds_revival(high[0], low[0], high[1], low[1])))
    pruned = parts.get(("low", "S", 1.0, "S")) or parts.get(("low", "S", 1.0, None))
    if pruned:
        verdicts.append(("low, η_S, C_Tr = 1", V.Verdict("T4: " + pruned[1].claim, pruned[1].outcome, pruned[1].reason,
                                                         pruned[1].numbers)))
    names = [f"{prior} η_{lr} C_Tr={c_tr:g}" + (f" reFT η_{r}" if r else "") for prior, lr, c_tr, r in parts]
    probes = [p[2] for p in parts.values()]
    if len(priors) > 1 and probes:
        verdicts.append(("every analysed cell", V.combine("T5: count(O_PT) stays decodable after fine-tuning", probes,
                                                          names)))
    speeds = [p[3] for p in parts.values()]
    if len(priors) > 1 and speeds:
        verdicts.append(("every analysed cell and reFT lr", V.combine("T6: reFT beats Scr.+FT at every prior", speeds,
                                                                      names)))
    if "high" in priors and "L" in lrs and early("high", "L", 0.0, "acc_pt_cte0"):
        verdicts.append(("high, η_L, C_Tr = 0", V.long_finetuning_removes(early("high", "L", 0.0, "acc_pt_cte0"),
                                                                          after("high", "L", 0.0, "acc_pt_cte0"))))
    return verdicts
