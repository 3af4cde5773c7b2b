"""The Tracr setting's report section: Table 3 beside ours, attention of the counting head, single-weight
pruning, reFT curves, the Max-identifier sort verdict."""

from __future__ import annotations

from pathlib import Path

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.report.render import Section
from wrapperlab.report.sections.common import (
    ACC_METRICS,
    cell_label,
    finetune_cell,
    ft_curves,
    groups,
    lr_name,
    paper_row,
    setup_table,
)
from wrapperlab.report.tables import ci_text
from wrapperlab.settings import registry


def tracr_section(rep: dict, paper: dict, store_root: Path, figures: Path) -> tuple[Section, dict]:
    from wrapperlab.report.figures.sweep import behaviour_figure, finetune_curves_figure, seeds_figure
    from wrapperlab.runs.store import RunStore

    nodes, store, name = rep["nodes"], RunStore(store_root), rep["spec"]
    program = rep.get("program", "counter")
    sec = Section(f"{name} ({rep['profile']} profile, seeds {sorted({n['point']['seed'] for n in nodes if 'seed' in n['point']})})")
    root = next((n for n in nodes if n["stage"] == "compile"), None)
    head = [["compiled program", f"{rep.get('program', root['point'].get('program', '?'))}"]] if root else []
    setup_table(sec, rep, store, "tracr", head)
    sec.text(f"Compiled {program} fine-tuned with SGD; 'floor' is the best constant output, 'shortcut' the share "
             f"answering r(O_PT) + q on uncorrelated inputs. Paper values: {paper['source']}.")
    rows, cells, curves, summary = [], [], {}, {"program": program, "finetune": []}
    attention = groups(nodes, "attention")
    for key, group in groups(nodes, "finetune").items():
        point = dict(key)
        ref_row = paper_row(paper, "tracr", point["lr"], point["c_tr"])
        cell, texts = finetune_cell(point, group, "tracr", ref_row, ACC_METRICS + ("shortcut_cte0", "floor_pt_cte0"))
        row = [lr_name("tracr", point["lr"]), f"{point['c_tr']:g}", *texts]
        attn = [n["data"] for n in attention.get(key, [])]
        if attn and program == "counter":
            for token in ("a", "b"):
                cell[f"attention_{token}"] = mean_ci([a["after"][1].get(token) for a in attn])
        if attn and "change" in attn[0]:
            cell["attention_change"] = [mean_ci([a["change"][b] for a in attn]) for b in range(len(attn[0]["change"]))]
        row.append(f"{ci_text(cell['attention_a'])} / {ci_text(cell['attention_b'])}" if "attention_a" in cell else "-")
        row.append(" / ".join(ci_text(c) for c in cell.get("attention_change", [])) or "-")
        rows.append(row)
        cells.append(cell)
        curves[cell["label"]] = ft_curves(store, group)
    summary["finetune"] = cells
    sec.table(["lr", "C_Tr", "O_PT C_Te=0 % ours (paper)", "O_PT C_Te=1", "O_FT C_Te=0", "O_FT C_Te=1",
               "answers r(O_PT)+q", "floor", "block-1 attention on a / b", "attention moved per block (TV %)"], rows)
    sec.figure(behaviour_figure({"": cells}, figures / f"{name}-behaviour.png"), "accuracies after fine-tuning per cell")
    sec.figure(finetune_curves_figure(curves, figures / f"{name}-ft-curves.png"), "accuracy vs fine-tuning step")
    _tracr_attention_verdict(sec, cells, paper, program)
    prunes = [n for n in nodes if n["stage"] == "prune"]
    if prunes:
        gains = mean_ci([n["data"]["gain"] for n in prunes])
        margin = mean_ci([n["data"]["best"][0]["acc_pt_cte0"] - n["data"]["floor_pt_cte0"] for n in prunes])
        summary["single_weight_gain"], summary["single_weight_above_floor"] = gains, margin
        shown = (margin.get("mean") or 0) > 0.2
        sec.verdict("one pruned weight revives the pretraining answer", shown,
                    f"best single weight gains {ci_text(gains)} points, ending {ci_text(margin)} points above the "
                    f"constant-output floor (paper: {paper['claims'].get('pruning', '-')})")
    refts = groups(nodes, "reft")
    if refts:
        summary["reft"] = []
        reft_curves = {}
        for key, group in refts.items():
            point = dict(key)
            steps = mean_ci([n["data"]["first_step_at"].get("acc_pt_cte0", {}).get("0.9") for n in group])
            end = mean_ci([n["data"]["after"]["acc_pt_cte0"] for n in group])
            summary["reft"].append({**point, "steps_to_0.9": steps, "end": end})
            reft_curves[f"FT {cell_label(point, 'tracr')}"] = [
                [(m["step"], m["acc_pt_cte0"]) for m in store.resolve(n["run_id"]).metrics() if "acc_pt_cte0" in m]
                for n in group]
        sec.figure(seeds_figure(reft_curves, figures / f"{name}-reft.png", "reFT step", "Acc O_PT, C_Te=0 (%)",
                                "reFT of the fine-tuned models", logx=True, threshold=0.9), "reFT curves over seeds")
        sec.text("reFT steps to 90 %: " + "; ".join(f"η_{lr_name('tracr', r['lr'])} C_Tr={r['c_tr']:g}: "
                                                     f"{ci_text(r['steps_to_0.9'], pct=False)} (end {ci_text(r['end'])} %)"
                                                     for r in summary["reft"])
                 + f" (paper: {paper['claims'].get('reft', '-')})")
    return sec, summary


def _tracr_attention_verdict(sec: Section, cells: list[dict], paper: dict, program: str) -> None:
    """Max-identifier: does the smallest lr leave Block 0 (the sort) least moved, and fine-tune best?"""
    moved = [c for c in cells if c.get("attention_change")]
    if program != "max-identifier" or len(moved) < 2:
        return
    by_lr = sorted(moved, key=lambda c: registry.get("tracr").lr_names.get(c["lr"], c["lr"]) if isinstance(c["lr"], str) else c["lr"])
    smallest = by_lr[0]["lr"]
    small = [c for c in moved if c["lr"] == smallest]
    large = [c for c in moved if c["lr"] != smallest]
    block0 = lambda cs: max(c["attention_change"][0]["mean"] for c in cs)  # noqa: E731
    kept = block0(small) < min(c["attention_change"][0]["mean"] for c in large)
    text = "; ".join(f"{c['label']}: Block 0 moved {ci_text(c['attention_change'][0])} %, Acc O_FT(C_Te=0) "
                     f"{ci_text(c['acc_ft_cte0'])} %" for c in by_lr)
    sec.verdict(f"η_{lr_name('tracr', smallest)} keeps the Block-0 sort", kept,
                f"{text} (paper: {paper['claims'].get('attention', '-')})", words=("reproduced", "not reproduced at this scale"))
