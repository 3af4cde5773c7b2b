"""What the report sections of the settings fine-tuned over a grid of learning rate × C_Tr (PCFG, Tracr) share: the
setup table with fine-tuning and reFT lengths, a cell's label, the paper's row for a cell, a cell over its seeds, the
fine-tuning curves."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.report.records import Record, Reproduced
from wrapperlab.report.render import Section
from wrapperlab.report.sections.common import lr_text, paper_text, stage_times_row
from wrapperlab.report.tables import ci_text
from wrapperlab.runs.profiles import load_profiles

ACC_METRICS = ("acc_pt_cte0", "acc_pt_cte1", "acc_ft_cte0", "acc_ft_cte1")


def cell_label(point: dict, head: str = "") -> str:
    """A fine-tuning cell: ``head`` (what else the setting's grid varies), its lr and its C_Tr."""
    return f"{head + ', ' if head else ''}η_{lr_text(point['lr'])}, C_Tr={point['c_tr']:g}"


def run_lr(store, node: Record) -> float:
    """The learning rate a node's run trained at, as its stored config holds it (the number the paper's rows give)."""
    return float(store.resolve(node.run_id).config()["train"]["lr"])


def paper_row(paper: dict, lr: float, c_tr: float, prior: float | None = None,
              pt_iters: float | None = None) -> dict | None:
    """The paper's row for a cell fine-tuned at ``lr`` (the run's number); rows that name a prior (P_T(O_PT)) match
    only a cell of that prior, rows that name a pretraining length (``pt_iters``: Table 5's 200K, Table 6's 50K) only
    a cell of that length."""
    def same(row: dict, key: str, ours: float | None) -> bool:
        theirs = row.get(key, paper.get(key))  # a row's own value, else its table's
        return theirs is None or (ours is not None and abs(theirs - ours) <= 1e-9 * max(1.0, abs(ours)))

    return next((r for r in paper.get("behaviour", []) if abs(r["lr"] - lr) < 1e-12 and r["c_tr"] == c_tr
                 and same(r, "prior", prior) and same(r, "pt_iters", pt_iters)), None)


def reft_factor() -> float:
    return float(load_profiles()["reft_lr_factor"])


def _reft_row(rep: Reproduced, store) -> list[str] | None:
    """The reFT row of the setup table: length, lrs, schedule, stop rule, the baselines' budget."""
    refts = [store.resolve(n.run_id).config()["train"] for n in rep.of("reft")]
    if not refts:
        return None
    t = refts[0]
    schedule = "constant" if t["min_lr_frac"] == 1.0 and not t["warmup_frac"] else "warm-up + cosine"
    lrs = ", ".join(f"{lr:g}" for lr in sorted({r["lr"] for r in refts}))
    which = "the spec's reFT lrs not above each fine-tuning's" if any("reft_lr" in n.point for n in rep.nodes) \
        else f"{reft_factor():g} × the fine-tuning lr"
    stop = "".join(f"; stops {t.get('stop_margin', 0)} steps after {k} ≥ {v:g}" for k, v in t["stop_when"].items()) \
        if t.get("stop_when") else ""
    baselines = f"; baselines: {load_profiles()['reft_baseline_factor']} × that budget" \
        if rep.of("scrft") else ""
    return ["reFT", f"{t['iters']} steps × {t['batch_size']}, lr {lrs} ({schedule}; {which}{stop}{baselines})"]


def setup_table(sec: Section, rep: Reproduced, store, head: list[list[str]]) -> None:
    """The setup table: the section's ``head`` rows (model, pretraining), then fine-tuning and reFT lengths, the
    grid, seeds, and the wall time per stage."""
    rows = list(head)
    fts = rep.of("finetune")
    if fts:
        t = store.resolve(fts[0].run_id).config()["train"]
        rows.append(["fine-tuning", f"{t['iters']} steps × {t['batch_size']}, {t.get('optimizer', 'adamw')}"])
    reft = _reft_row(rep, store)
    rows += [reft] if reft else []
    axes = defaultdict(set)
    for n in fts:
        for k, v in n.point.items():
            axes[k].add(v)
    for k in sorted(axes):
        values = sorted(axes[k], key=str)
        shown = [lr_text(v) for v in values] if k == "lr" else [str(v) for v in values]
        rows.append([k if k != "seed" else "seeds", ", ".join(shown)])
    rows.append(stage_times_row(rep))
    sec.table(["setting", "value"], rows)


def finetune_cell(point: dict, group: list[Record], label: str, paper_row: dict | None,
                  metrics: tuple[str, ...], early: dict[str, list[float | None]] | None = None) -> tuple[dict, list[str]]:
    """One grid cell over its seeds: the summary entry (mean ± CI per metric) and the table texts, the paper's
    value in parentheses after each accuracy; with ``early`` (per metric, per seed: the "@1K" analog) ours is
    given as early / end like the paper's @1K / @10K."""
    cell: dict[str, Any] = {**point, "label": label, "seeds": len(group)}
    texts = []
    for metric in metrics:
        cell[metric] = mean_ci([n.result.after[metric] for n in group])
        ours = ci_text(cell[metric])
        if early is not None and metric in early:
            cell[f"{metric}_early"] = mean_ci(early[metric])
            ours = f"{ci_text(cell[f'{metric}_early'])} / {ours}"
        texts.append(ours + (f" ({paper_text(paper_row, metric)})" if metric.startswith("acc") else ""))
    return cell, texts


def ft_curves(store, group: list[Record]) -> dict[str, list]:
    """Per metric, one curve per seed from the fine-tuning runs' logged evaluations."""
    out: dict[str, list] = defaultdict(list)
    for n in group:
        metrics = store.resolve(n.run_id).metrics()
        for key in ACC_METRICS:
            curve = [(m["step"], m[key]) for m in metrics if key in m]
            if curve:
                out[key].append(curve)
    return out
