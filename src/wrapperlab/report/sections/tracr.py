"""The Tracr setting's report section: Table 3 beside ours, attention of the counting head, single-weight
pruning, reFT curves, the Max-identifier sort verdict."""

from __future__ import annotations

from pathlib import Path

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.claims import verdicts as V
from wrapperlab.report.records import Record, Reproduced, groups
from wrapperlab.report.render import Section
from wrapperlab.report.sections.common import lr_text
from wrapperlab.report.sections.grid import (
    ACC_METRICS,
    cell_label,
    finetune_cell,
    ft_curves,
    paper_row,
    run_lr,
    setup_table,
)
from wrapperlab.report.tables import ci_text


def tracr_section(rep: Reproduced, paper: dict, store_root: Path, figures: Path) -> tuple[Section, dict]:
    from wrapperlab.report.figures.sweep import behaviour_figure, finetune_curves_figure
    from wrapperlab.runs.store import RunStore

    nodes, store, name = rep.nodes, RunStore(store_root), rep.spec
    program = rep.options.get("program", "counter")
    sec = Section(f"{name} ({rep.profile} profile, seeds {sorted({n.seed for n in nodes if 'seed' in n.point})})")
    roots = rep.of("compile")
    head = [["compiled program", f"{rep.options.get('program', roots[0].point.get('program', '?'))}"]] if roots else []
    setup_table(sec, rep, store, head)
    sec.text(f"Compiled {program} fine-tuned with SGD; 'floor' is the best constant output, 'shortcut' the share "
             f"answering r(O_PT) + q on uncorrelated inputs. Paper values: {paper['source']}.")
    rows, cells, curves, summary = [], [], {}, {"program": program, "finetune": []}
    attention, lrs = groups(nodes, "attention"), {}
    for key, group in groups(nodes, "finetune").items():
        point = dict(key)
        lrs[cell_label(point)] = run_lr(store, group[0])
        ref_row = paper_row(paper, lrs[cell_label(point)], point["c_tr"])
        cell, texts = finetune_cell(point, group, cell_label(point), ref_row,
                                    ACC_METRICS + ("shortcut_cte0", "floor_pt_cte0"))
        row = [lr_text(point["lr"]), f"{point['c_tr']:g}", *texts]
        attn = [n.result for n in attention.get(key, [])]
        if attn and program == "counter":
            for token in ("a", "b"):
                cell[f"attention_{token}"] = mean_ci([a.after[1].get(token) for a in attn])
        if attn and attn[0].change is not None:
            cell["attention_change"] = [mean_ci([a.change[b] for a in attn]) for b in range(len(attn[0].change))]
            cell["block0_change_by_seed"] = {n.seed: n.result.change[0] for n in attention[key]}
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
    _tracr_attention_verdict(sec, cells, paper, program, lrs, summary)
    prunes = [n.result for n in rep.of("prune")]
    if prunes:
        gains = mean_ci([r.gain for r in prunes])
        margin = mean_ci([r.best[0]["acc_pt_cte0"] - r.floor_pt_cte0 for r in prunes])
        summary["single_weight_gain"], summary["single_weight_above_floor"] = gains, margin
        verdict = V.single_weight_revival([r.best[0]["acc_pt_cte0"] for r in prunes], [r.floor_pt_cte0 for r in prunes])
        summary["single_weight_verdict"] = verdict.as_dict()
        sec.rule(verdict.claim, verdict.outcome, f"{verdict.reason}; the best single weight gains {ci_text(gains)} "
                                                 f"points (paper: {paper['claims'].get('pruning', '-')})")
    if rep.of("reft"):
        summary["reft"], summary["reft_verdicts"] = _reft_section(sec, nodes, store, figures, name, paper)
    return sec, summary


def _tracr_attention_verdict(sec: Section, cells: list[dict], paper: dict, program: str,
                             lrs: dict[str, float], summary: dict) -> None:
    """Max-identifier: does the smallest lr (``lrs``: each cell's, as its runs trained at it) leave Block 0 (the
    sort) least moved? The rule of claims/verdicts.py (``sort_kept``), seed by seed; each cell's Block-0 change and
    fine-tuning accuracy beside it."""
    moved = [c for c in cells if c.get("block0_change_by_seed")]
    if program != "max-identifier" or len(moved) < 2:
        return
    by_lr = sorted(moved, key=lambda c: lrs[c["label"]])
    smallest = by_lr[0]["lr"]
    small = [c for c in moved if c["lr"] == smallest]
    large = [c for c in moved if c["lr"] != smallest]
    seeds = sorted(set.intersection(*(set(c["block0_change_by_seed"]) for c in moved)))
    verdict = V.sort_kept([max(c["block0_change_by_seed"][s] for c in small) for s in seeds],
                          [min(c["block0_change_by_seed"][s] for c in large) for s in seeds])
    summary["sort_verdict"] = verdict.as_dict()
    text = "; ".join(f"{c['label']}: Block 0 moved {ci_text(c['attention_change'][0])} %, Acc O_FT(C_Te=0) "
                     f"{ci_text(c['acc_ft_cte0'])} %" for c in by_lr)
    sec.rule(f"η_{lr_text(smallest)} keeps the Block-0 sort", verdict.outcome,
             f"{verdict.reason}; {text} (paper: {paper['claims'].get('attention', '-')})")


def _steps(node: Record) -> int | None:
    return node.result.steps_to()


def _reft_section(sec: Section, nodes: list[Record], store, figures: Path, name: str, paper: dict) -> tuple[list, list]:
    """The Table 4 replica and Fig. 27: reFT steps to 90 % per fine-tuning cell (rows) and reFT lr (columns), beside
    the Scr.+FT (the program compiled for the fine-tuning target) and Scr. (fresh init) baselines at the same reFT
    lrs; verdicts from claims/verdicts.py — reFT faster than Scr.+FT per cell and reFT lr, and η_M's fine-tuning
    revived faster than η_L's at the same reFT lr (the paper: η_L's cannot be revived)."""
    from wrapperlab.report.figures.sweep import seeds_figure

    def reft_lr(n: Record) -> str:
        return str(n.point.get("reft_lr", "the profile's"))

    refts = [n for n in nodes if n.stage == "reft"]
    lrs = list(dict.fromkeys(reft_lr(n) for n in refts))
    rows, out = [], []
    by_seed: dict[tuple, dict[int, Record]] = {}
    for n in refts + [n for n in nodes if n.stage in ("scrft", "scratch")]:
        who = (n.point["lr"], n.point["c_tr"]) if n.stage == "reft" else n.stage
        by_seed.setdefault((who, reft_lr(n)), {})[n.seed] = n
    cells = list(dict.fromkeys(who for who, _ in by_seed))

    def who_label(who) -> str:
        return (f"FT η_{lr_text(who[0])}, C_Tr={who[1]:g}" if isinstance(who, tuple)
                else {"scrft": "Scr.+FT (compiled for O_FT)", "scratch": "Scr. (fresh init)"}[who])

    for who in cells:
        label = who_label(who)
        row = [label]
        for lr in lrs:
            group = list(by_seed.get((who, lr), {}).values())
            if not group:
                row.append("-")
                continue
            steps = mean_ci([_steps(n) for n in group])
            end = mean_ci([n.result.after["acc_pt_cte0"] for n in group])
            reached = sum(_steps(n) is not None for n in group)
            out.append({"who": label, "reft_lr": lr, "steps_to_0.9": steps, "end": end, "reached": reached,
                        "seeds": len(group)})
            row.append(f"{ci_text(steps, pct=False)} ({reached}/{len(group)} reach 90 %; end {ci_text(end)} %)")
        rows.append(row)
    sec.table(["reverse fine-tuned model"] + [f"reFT η_{lr}: steps to 90 %" for lr in lrs], rows)
    sec.text("Table 4 replica: every fine-tuning lr reverse fine-tuned at the same reFT lrs (each not above its own), "
             "so a faster revival is not a larger reFT lr in disguise; steps to 90 % Acc O_PT(C_Te=0) are the mean "
             "± 95 % CI over the seeds that reached it. The paper's Table 4 columns are ambiguous (protocol.md "
             f"§7.5), so its claims stand beside ours: {paper['claims'].get('reft', '-')}")
    for lr in lrs:
        curves = {}
        for who in cells:
            group = sorted(by_seed.get((who, lr), {}).values(), key=lambda n: n.seed)
            if group:
                curves[who_label(who)] = [
                    [(m["step"], m["acc_pt_cte0"]) for m in store.resolve(n.run_id).metrics() if "acc_pt_cte0" in m]
                    for n in group]
        sec.figure(seeds_figure(curves, figures / f"{name}-reft-{lr}.png", ("reFT step", "Acc O_PT, C_Te=0 (%)",
                                f"reFT at η_{lr} (Fig. 27 panel)"), logx=True, threshold=0.9), f"reFT at η_{lr}")
    return out, _reft_verdicts(sec, store, by_seed, cells, lrs)


def _reft_verdicts(sec: Section, store, by_seed: dict[tuple, dict[int, Record]], cells: list, lrs: list[str]) -> list:
    """The speed rules of claims/verdicts.py: each reFT against Scr.+FT at its reFT lr, and at each reFT lr a
    fine-tuning at η_M against one at η_L (the paper: η_L's cannot be revived)."""
    iters: dict[str, int] = {}  # run id -> its step budget (read once per run)
    verdicts: list[dict] = []

    def speed(faster: dict[int, Record], slower: dict[int, Record], **claim) -> None:
        """The speed rule on the seeds both sides have, each censored at its own run's budget."""
        for n in (*faster.values(), *slower.values()):
            iters.setdefault(n.run_id, store.resolve(n.run_id).config()["train"]["iters"])
        seeds = sorted(set(faster) & set(slower))
        verdict = V.revival_speed([_steps(faster[s]) for s in seeds], [_steps(slower[s]) for s in seeds],
                                  [iters[faster[s].run_id] for s in seeds],
                                  [iters[slower[s].run_id] for s in seeds], **claim)
        sec.rule(verdict.claim, verdict.outcome, verdict.reason)
        verdicts.append(verdict.as_dict())

    finetuned = [c for c in cells if isinstance(c, tuple)]
    top_c_tr = max((c[1] for c in finetuned), default=None)
    for lr in lrs:
        control = by_seed.get(("scrft", lr), {})
        for who in finetuned:
            treated = by_seed.get((who, lr), {})
            if treated and control:
                cell = f"FT η_{lr_text(who[0])}, C_Tr={who[1]:g}, reFT η_{lr}"
                speed(treated, control, claim=f"reFT ({cell}) revives count(O_PT) faster than Scr.+FT learns it")
        by_lr = {who[0]: by_seed[(who, lr)] for who in finetuned if who[1] == top_c_tr and (who, lr) in by_seed}
        if "M" in by_lr and "L" in by_lr:
            speed(by_lr["M"], by_lr["L"], claim=f"a fine-tuning at η_M is revived faster than one at η_L (reFT η_{lr})",
                  what="log2 steps to 90 %, FT η_L minus FT η_M")
    return verdicts
