"""The PCFG setting's report section: Tables 5 / 7 beside ours, Figs. 5-9 over seeds, the wrapper verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.report import verdicts as V
from wrapperlab.report.figures.single import METRIC_LABELS
from wrapperlab.report.render import Section
from wrapperlab.report.sections.common import (
    ACC_METRICS,
    cell_label,
    finetune_cell,
    ft_curves,
    groups,
    lr_name,
    operands,
    paper_row,
    paper_text,
    setup_table,
)
from wrapperlab.report.tables import ci_text
from wrapperlab.settings.pcfg.nodes import NEVER


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
    ref = paper.get("pretrained", {})
    sec.text(f"Pretrained models: {task} {pt} {ci_text(acc_pt)} % (paper {paper_text(ref, 'o_pt')}), {task} {ft} "
             f"{ci_text(acc_ft)} % (paper {paper_text(ref, 'o_ft')}). Paper values: {paper['source']}.")
    header = ["prior", "lr", "C_Tr"] + [f"{m} % ours (paper @1K / @10K)" for m in ("O_PT C_Te=0", "O_PT C_Te=1", "O_FT C_Te=0", "O_FT C_Te=1")]
    rows, cells, curves = [], [], {}
    for key, group in groups(nodes, "finetune").items():
        point = dict(key)
        ref_row = paper_row(paper, kind, point["lr"], point["c_tr"]) if point.get("prior") == "low" else None
        cell, texts = finetune_cell(point, group, kind, ref_row, ACC_METRICS)
        rows.append([str(point.get("prior", "-")), lr_name(kind, point["lr"]), f"{point['c_tr']:g}", *texts])
        cells.append(cell)
        curves[cell["label"]] = ft_curves(store, group)
    sec.table(header, rows)
    summary["finetune"] = cells
    sec.figure(behaviour_figure(cells, figures / f"{rep['spec']}-behaviour.png", acc_pt),
               "Acc O_PT / O_FT after fine-tuning per cell (Fig. 6)")
    sec.figure(finetune_curves_figure(curves, figures / f"{rep['spec']}-ft-curves.png"),
               "accuracy vs fine-tuning step (Figs. 5, 68–75)")
    _pcfg_analyses(sec, rep, paper, figures, summary)
    return sec, summary


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
                            [_budget(reft.get(s, {}).get("reft")) for s in seeds],
                            [_budget(reft.get(s, {}).get("scr+ft")) for s in seeds])
    parts = [behaviour, pruning, probing, speed]
    return V.pcfg_wrapper(*parts), parts


def _budget(curve: dict | None) -> int:
    """The steps a reFT or baseline curve was allowed (older results: its last evaluated step)."""
    if curve is None:
        return 0
    return curve.get("budget") or max((step for step, _ in curve["curve"]), default=0)


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


def _pcfg_analyses(sec: Section, rep: dict, paper: dict, figures: Path, summary: dict) -> None:
    from wrapperlab.report.figures.sweep import probe_seeds_figure, seeds_figure

    nodes, name = rep["nodes"], rep["spec"]
    task, pt_op, _ = operands(rep)
    prunes, probes, refts = groups(nodes, "prune"), groups(nodes, "probe"), groups(nodes, "reft")
    finetunes = groups(nodes, "finetune")
    never = {stage: {(n["point"]["prior"], n["point"]["seed"]): n["data"] for n in nodes
                     if n["stage"] == stage and n["point"].get("model") == NEVER} for stage in ("prune", "probe")}
    pretrained = {(n["point"]["prior"], n["point"]["seed"]): n["data"] for n in nodes if n["stage"] == "pretrain"}
    rows, figs, lines, drawn_cells = [], [], [], set()
    for key, reft_lr in _analysed_cells(prunes, probes, refts):
        point = dict(key)
        reft_key = key if reft_lr is None else tuple(sorted({**point, "reft_lr": reft_lr}.items()))
        ft = finetunes.get(key, [])
        seeds = sorted(n["point"]["seed"] for n in ft)
        prior = point.get("prior")
        data = {"pair": f"{task}/{pt_op}", "finetune": _by_seed(ft), "prune": _by_seed(prunes.get(key, [])),
                "probe": _by_seed(probes.get(key, [])), "reft": _by_seed(refts.get(reft_key, [])),
                "pretrain": {s: d for (p, s), d in pretrained.items() if p == prior},
                "never_prune": {s: d for (p, s), d in never["prune"].items() if p == prior},
                "never_probe": {s: d for (p, s), d in never["probe"].items() if p == prior}}
        wrapper, parts = _cell_verdicts(seeds, data)
        behaviour, pruning, probing, speed = parts
        label = cell_label(point, "pcfg") + ("" if reft_lr is None else f", reFT η {lr_name('pcfg', reft_lr)}")
        never_probe = mean_ci([V.probe_best(d) for d in data["never_probe"].values()])
        random_probe = mean_ci([V.probe_best(d, "random_init") for d in data["probe"].values()])
        steps = {c: mean_ci([d[c]["steps_to_0.9"] for d in data["reft"].values() if c in d]) for c in ("reft", "scr+ft")}
        rows.append([label, _stat_text(behaviour), _stat_text(pruning),
                     f"{ci_text(mean_ci(probing.numbers['treated']))} vs {ci_text(random_probe)} / {ci_text(never_probe)}",
                     " vs ".join(ci_text(steps[c], pct=False) for c in ("reft", "scr+ft")), wrapper.outcome])
        summary.setdefault("analysed", []).append({**point, **({} if reft_lr is None else {"reft_lr": reft_lr}),
                                                   "seeds": seeds, "verdict": wrapper.outcome,
                                                   "signatures": {p.claim: p.as_dict() for p in parts}})
        lines.append((label, wrapper, parts))
        tag = f"{name}-{lr_name('pcfg', point['lr'])}-ctr{point['c_tr']:g}"
        drawn = key in drawn_cells  # a cell reverse fine-tuned at several lrs: its pruning and probe figures once
        drawn_cells.add(key)
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
            figs.append((probe_seeds_figure([n["data"] for n in probes[key]], figures / f"probe-{tag}.png",
                                            f"linear probes per block, {label}"),
                         f"probe accuracy per block over seeds, {label} (Fig. 8)"))
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
                   "best-block probe %: FT vs random init / never-had-it", "reFT steps to 90 %: reFT vs Scr.+FT",
                   "wrapper"], rows)
    for label, wrapper, parts in lines:
        sec.rule(f"{label}: {wrapper.claim}", wrapper.outcome,
                 "; ".join(f"{p.claim} — {p.outcome} ({p.reason})" for p in parts)
                 + f". Paper: {paper['claims'].get('pruning', '-')}; {paper['claims'].get('reft', '-')}")
    for fig in figs:
        sec.figure(*fig)
