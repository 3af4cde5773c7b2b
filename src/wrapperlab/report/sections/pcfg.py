"""The PCFG setting's report section: Tables 5 / 7 beside ours, Figs. 5-9 over seeds, the wrapper verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wrapperlab.analysis.stats import mean_ci
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
from wrapperlab.report.verdicts import wrapper_shown


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


def _pcfg_analyses(sec: Section, rep: dict, paper: dict, figures: Path, summary: dict) -> None:
    from wrapperlab.report.figures.sweep import probe_seeds_figure, seeds_figure

    nodes, name = rep["nodes"], rep["spec"]
    prunes, probes, refts = groups(nodes, "prune"), groups(nodes, "probe"), groups(nodes, "reft")
    rows, figs, verdicts = [], [], []
    for key in sorted(set(prunes) | set(refts) | set(probes)):
        point = dict(key)
        ft = [n for n in nodes if n["stage"] == "finetune" and {k: v for k, v in n["point"].items() if k != "seed"} == point]
        after = mean_ci([n["data"]["after"]["acc_pt_cte0"] for n in ft])
        k_half = mean_ci([n["data"]["k_to_half"] for n in prunes.get(key, [])])
        probe_ft = mean_ci([_last_probe(n["data"], "model") for n in probes.get(key, [])])
        probe_rand = mean_ci([_last_probe(n["data"], "random_init") for n in probes.get(key, [])])
        steps = {c: mean_ci([n["data"][c]["steps_to_0.9"] for n in refts.get(key, []) if c in n["data"]])
                 for c in ("reft", "scr+ft", "scr")}
        label = cell_label(point, "pcfg")
        rows.append([label, ci_text(after), ci_text(k_half, pct=False), f"{ci_text(probe_ft)} vs {ci_text(probe_rand)}",
                     " / ".join(ci_text(steps[c], pct=False) for c in ("reft", "scr+ft", "scr"))])
        shown = wrapper_shown(after, k_half, steps)
        summary.setdefault("analysed", []).append({**point, "acc_pt_cte0_after": after, "k_to_half": k_half,
                                                   "probe_last": probe_ft, "probe_last_random": probe_rand,
                                                   "reft_steps_to_0.9": steps, "wrapper_shown": bool(shown)})
        verdicts.append((label, bool(shown),
                    f"Acc O_PT(C_Te=0) after FT {ci_text(after)} %; pruning restores half of it with K = "
                    f"{ci_text(k_half, pct=False)} rows (paper: {paper['claims'].get('pruning', '-')}); probe "
                    f"{ci_text(probe_ft)} % vs random init {ci_text(probe_rand)} %; reFT reaches 90 % at step "
                    f"{ci_text(steps['reft'], pct=False)}, Scr.+FT {ci_text(steps['scr+ft'], pct=False)} "
                    f"(paper: {paper['claims'].get('reft', '-')})"))
        tag = f"{name}-{lr_name('pcfg', point['lr'])}-ctr{point['c_tr']:g}"
        if key in prunes:
            ks = prunes[key][0]["data"]["ks"]
            curves = {METRIC_LABELS[m]: [list(zip(ks, n["data"]["curves"][m])) for n in prunes[key]]
                      for m in ("acc_pt_cte0", "acc_ft_cte1") if m in prunes[key][0]["data"]["curves"]}
            figs.append((seeds_figure(curves, figures / f"prune-{tag}.png", "units pruned (K)", "accuracy (%)",
                                      f"pruning by pretraining-task saliency, {label}", logx=True),
                         f"pruning curves over seeds, {label} (Fig. 7)"))
        if key in probes:
            figs.append((probe_seeds_figure([n["data"] for n in probes[key]], figures / f"probe-{tag}.png",
                                            f"linear probes per block, {label}"),
                         f"probe accuracy per block over seeds, {label} (Fig. 8)"))
        if key in refts:
            curves = {c: [n["data"][c]["curve"] for n in refts[key] if c in n["data"]] for c in ("reft", "scr+ft", "scr")}
            figs.append((seeds_figure(curves, figures / f"reft-{tag}.png", "reFT step", "Acc O_PT, C_Te=0 (%)",
                                      f"reverse fine-tuning vs baselines, {label}", logx=True, threshold=0.9),
                         f"reFT vs Scr.+FT and Scr. over seeds, {label} (Fig. 9)"))
    if rows:
        sec.table(["cell", "O_PT C_Te=0 after FT %", "K to half", "probe last block: FT vs random %",
                   "reFT steps to 90 %: reFT / Scr.+FT / Scr."], rows)
    for verdict in verdicts:
        sec.verdict(*verdict)
    for fig in figs:
        sec.figure(*fig)


def _last_probe(data: dict, which: str) -> float:
    target = next(iter(data["accuracy"]))
    return data["accuracy"][target][which][-1]
