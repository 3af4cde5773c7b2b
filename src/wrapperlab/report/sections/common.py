"""What every setting's report section shares: the setup table, grid cells over seeds, the paper's values beside
ours, learning rates by their names (from the setting registry)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.report.render import Section
from wrapperlab.report.tables import ci_text
from wrapperlab.runs.profiles import load_profiles
from wrapperlab.settings import registry


def lr_name(kind: str, lr: Any) -> str:
    """``lr`` by the setting's name for it (1e-5 -> "M" in PCFG), or the number."""
    if isinstance(lr, str):
        return lr
    return next((k for k, v in registry.get(kind).lr_names.items() if abs(v - float(lr)) < 1e-12), f"{lr:g}")


def groups(nodes: list[dict], stage: str) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for n in nodes:
        if n["stage"] == stage:
            point = {k: v for k, v in n["point"].items() if k != "seed"}
            out[tuple(sorted(point.items()))].append(n)
    return out


def paper_row(paper: dict, kind: str, lr: Any, c_tr: float, prior: float | None = None,
              pt_iters: float | None = None) -> dict | None:
    """The paper's row for a cell; rows that name a prior (P_T(O_PT)) match only a cell of that prior, rows that
    name a pretraining length (``pt_iters``: Table 5's 200K, Table 6's 50K) only a cell of that length."""
    value = registry.get(kind).lr_names.get(lr, lr) if isinstance(lr, str) else lr

    def same(row: dict, key: str, ours: float | None) -> bool:
        theirs = row.get(key, paper.get(key))  # a row's own value, else its table's
        return theirs is None or (ours is not None and abs(theirs - ours) <= 1e-9 * max(1.0, abs(ours)))

    return next((r for r in paper.get("behaviour", []) if abs(r["lr"] - float(value)) < 1e-12 and r["c_tr"] == c_tr
                 and same(r, "prior", prior) and same(r, "pt_iters", pt_iters)), None)


def paper_length(paper: dict, ours: int | None, longest: int | None) -> float | None:
    """The paper's pretraining length our ``ours`` steps stand for: the same fraction of the paper's longest
    pretraining (``paper["pt_iters_longest"]``, 200K) as ``ours`` is of our longest — so a 100- vs 400-step axis
    reads the paper's 50K (Table 6) vs 200K (Table 5). None where the paper or the spec has no length axis."""
    if ours is None or not longest or "pt_iters_longest" not in paper:
        return None
    return paper["pt_iters_longest"] * ours / longest


def paper_text(row: dict | None, key: str) -> str:
    if row is None or key not in row:
        return "-"
    value = row[key]
    return " / ".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value:g}"


def operands(rep: dict) -> tuple[str, str, str]:
    """(task, O_PT, O_FT) of a PCFG reproduction, from the fine-tuning settings its spec used."""
    ft = rep.get("base", {}).get("finetune", {})
    return ft.get("data.task", "count"), ft.get("data.pt_operand", "a"), ft.get("data.operand", "b")


def root_label(point: dict) -> str:
    """What a pretraining was: its prior, and its depth and length where a spec varies them."""
    parts = [str(point["prior"])] if "prior" in point else []
    parts += [f"{point['blocks']} blocks"] if "blocks" in point else []
    parts += [f"pretrained {point['pt_iters']} steps"] if "pt_iters" in point else []
    return ", ".join(parts)


def protocol_label(point: dict) -> str:
    """How a cell was fine-tuned, where a spec varies it (the paper's App. E data interventions): the share of
    pretraining data mixed in, randFT or plain fine-tuning."""
    parts = [f"PT mix {100 * point['mix_pt']:g} %"] if "mix_pt" in point else []
    parts += ["randFT" if point["randft"] else "plain FT"] if "randft" in point else []
    return ", ".join(parts)


def grid_label(point: dict) -> str:
    """What a cell is besides its lr and C_Tr: its pretraining (root_label) and its fine-tuning protocol."""
    return ", ".join(p for p in (root_label(point), protocol_label(point)) if p)


def cell_label(point: dict, kind: str) -> str:
    head = grid_label(point)
    return f"{head + ', ' if head else ''}η_{lr_name(kind, point['lr'])}, C_Tr={point['c_tr']:g}"


def setup_table(sec: Section, rep: dict, store, kind: str, head: list[list[str]]) -> None:
    """The setup table: the section's ``head`` rows (model, pretraining), then fine-tuning and reFT lengths, the
    grid, seeds, and the wall time per stage."""
    nodes = rep["nodes"]
    rows = list(head)
    ft = next((n for n in nodes if n["stage"] == "finetune"), None)
    if ft is not None:
        t = store.resolve(ft["run_id"]).config()["train"]
        rows.append(["fine-tuning", f"{t['iters']} steps × {t['batch_size']}, {t.get('optimizer', 'adamw')}"])
    refts = [store.resolve(n["run_id"]).config()["train"] for n in nodes if n["stage"] == "reft"]
    if refts:
        t = refts[0]
        schedule = "constant" if t["min_lr_frac"] == 1.0 and not t["warmup_frac"] else "warm-up + cosine"
        lrs = ", ".join(f"{lr:g}" for lr in sorted({r["lr"] for r in refts}))
        which = "the spec's reFT lrs not above each fine-tuning's" if any("reft_lr" in n["point"] for n in nodes) \
            else f"{load_reft_factor():g} × the fine-tuning lr"
        stop = "".join(f"; stops {t.get('stop_margin', 0)} steps after {k} ≥ {v:g}" for k, v in t["stop_when"].items()) \
            if t.get("stop_when") else ""
        baselines = f"; baselines: {load_profiles()['reft_baseline_factor']} × that budget" \
            if any(n["stage"] == "scrft" for n in nodes) else ""
        rows.append(["reFT", f"{t['iters']} steps × {t['batch_size']}, lr {lrs} ({schedule}; {which}{stop}{baselines})"])
    axes = defaultdict(set)
    for n in nodes:
        if n["stage"] == "finetune":
            for k, v in n["point"].items():
                axes[k].add(v)
    for k in sorted(axes):
        values = sorted(axes[k], key=str)
        shown = [lr_name(kind, v) for v in values] if k == "lr" else [str(v) for v in values]
        rows.append([k if k != "seed" else "seeds", ", ".join(shown)])
    rows.append(stage_times_row(rep))
    sec.table(["setting", "value"], rows)


def stage_times_row(rep: dict) -> list[str]:
    """The setup table's last row: node wall time summed per stage (over workers), and the call's total."""
    per_stage: dict[str, list[float]] = defaultdict(list)
    for n in rep["nodes"]:
        per_stage[n["stage"]].append(n.get("seconds", 0.0))
    return ["wall time per stage (s, this call)",
            "; ".join(f"{st}: {sum(v):.0f} ({len(v)} nodes)" for st, v in per_stage.items())
            + f"; total {rep.get('seconds', 0):.0f}"]


def load_reft_factor() -> float:
    return float(load_profiles()["reft_lr_factor"])


ACC_METRICS = ("acc_pt_cte0", "acc_pt_cte1", "acc_ft_cte0", "acc_ft_cte1")


def finetune_cell(point: dict, group: list[dict], kind: str, paper_row: dict | None,
                  metrics: tuple[str, ...], early: dict[str, list[float | None]] | None = None) -> tuple[dict, list[str]]:
    """One grid cell over its seeds: the summary entry (mean ± CI per metric) and the table texts, the paper's
    value in parentheses after each accuracy; with ``early`` (per metric, per seed: the "@1K" analog) ours is
    given as early / end like the paper's @1K / @10K."""
    cell: dict[str, Any] = {**point, "label": cell_label(point, kind), "seeds": len(group)}
    texts = []
    for metric in metrics:
        cell[metric] = mean_ci([n["data"]["after"][metric] for n in group])
        ours = ci_text(cell[metric])
        if early is not None and metric in early:
            cell[f"{metric}_early"] = mean_ci(early[metric])
            ours = f"{ci_text(cell[f'{metric}_early'])} / {ours}"
        texts.append(ours + (f" ({paper_text(paper_row, metric)})" if metric.startswith("acc") else ""))
    return cell, texts


def ft_curves(store, group: list[dict]) -> dict[str, list]:
    """Per metric, one curve per seed from the fine-tuning runs' logged evaluations."""
    out: dict[str, list] = defaultdict(list)
    for n in group:
        metrics = store.resolve(n["run_id"]).metrics()
        for key in ACC_METRICS:
            curve = [(m["step"], m[key]) for m in metrics if key in m]
            if curve:
                out[key].append(curve)
    return out


def reft_budget(curve: dict | None) -> int:
    """The steps a PCFG reFT or baseline curve was allowed (older results: its last evaluated step)."""
    if curve is None:
        return 0
    return curve.get("budget") or max((step for step, _ in curve["curve"]), default=0)
