"""The reproduction report: our numbers (mean ± 95 % CI over seeds) beside the paper's, with figures and a
verdict per claim, as a self-contained HTML page, a Markdown twin and ``summary.json`` for machines.

Input is what ``reproduce`` stores per spec and profile (``<store>/reproductions/<spec>-<profile>.json``: the
grid point and outcome of every node); the paper's numbers come from ``report/data/paper_values.yaml``.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.errors import ConfigError
from wrapperlab.report.figures import METRIC_LABELS
from wrapperlab.report.tables import ci_text

LR_NAMES = {"pcfg": {"L": 1e-4, "M": 1e-5, "S": 1e-6}, "tracr": {"L": 1e-1, "M": 1e-2, "S": 1e-3, "VS": 1e-4}}


def paper_values() -> dict[str, Any]:
    return yaml.safe_load(resources.files("wrapperlab.report").joinpath("data", "paper_values.yaml").read_text())


class Section:
    """One experiment's part of the report: headings, tables (rows of cells), figures, verdicts."""

    def __init__(self, title: str):
        self.title = title
        self.blocks: list[tuple[str, Any]] = []

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(("figure", (path, caption)))

    def verdict(self, claim: str, shown: bool | None, numbers: str,
                words: tuple[str, str] = ("wrapper shown", "not shown at this scale")) -> None:
        word = {True: words[0], False: words[1], None: "not measured"}[shown]
        self.blocks.append(("verdict", f"**{claim}** — {word}: {numbers}"))


def _lr_name(kind: str, lr: Any) -> str:
    if isinstance(lr, str):
        return lr
    return next((k for k, v in LR_NAMES[kind].items() if abs(v - float(lr)) < 1e-12), f"{lr:g}")


def _groups(nodes: list[dict], stage: str) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for n in nodes:
        if n["stage"] == stage:
            point = {k: v for k, v in n["point"].items() if k != "seed"}
            out[tuple(sorted(point.items()))].append(n)
    return out


def _paper_row(paper: dict, kind: str, lr: Any, c_tr: float) -> dict | None:
    value = LR_NAMES[kind].get(lr, lr) if isinstance(lr, str) else lr
    return next((r for r in paper.get("behaviour", []) if abs(r["lr"] - float(value)) < 1e-12 and r["c_tr"] == c_tr), None)


def _paper_text(row: dict | None, key: str) -> str:
    if row is None or key not in row:
        return "-"
    value = row[key]
    return " / ".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value:g}"


def _operands(rep: dict) -> tuple[str, str, str]:
    """(task, O_PT, O_FT) of a PCFG reproduction, from the fine-tuning settings its spec used."""
    ft = rep.get("base", {}).get("finetune", {})
    return ft.get("data.task", "count"), ft.get("data.pt_operand", "a"), ft.get("data.operand", "b")


def _cell_label(point: dict, kind: str) -> str:
    prior = f"{point['prior']}, " if "prior" in point else ""
    return f"{prior}η_{_lr_name(kind, point['lr'])}, C_Tr={point['c_tr']:g}"


def _setup(sec: Section, rep: dict, store, kind: str) -> None:
    """The setup table: model, data, training lengths, grid, seeds, and the wall time per stage."""
    nodes = rep["nodes"]
    rows = []
    root = next((n for n in nodes if n["stage"] in ("pretrain", "compile")), None)
    if root is not None and kind == "pcfg":
        cfg = store.resolve(root["run_id"]).config()
        m, d, t = cfg["model"], cfg["data"], cfg["train"]
        rows.append(["model", f"{m['n_layers']} blocks × d={m['d_model']}, {m['n_heads']} heads, "
                              f"{root['data'].get('params', '?')} parameters"])
        rows.append(["pretraining", f"{t['iters']} steps × {t['batch_size']}, lr {t['lr']:g}; tasks "
                                    f"{', '.join(d['tasks'])}; windows of {d['window']} terminals"])
    elif root is not None:
        rows.append(["compiled program", f"{rep.get('program', root['point'].get('program', '?'))}"])
    ft = next((n for n in nodes if n["stage"] == "finetune"), None)
    if ft is not None:
        t = store.resolve(ft["run_id"]).config()["train"]
        rows.append(["fine-tuning", f"{t['iters']} steps × {t['batch_size']}, {t.get('optimizer', 'adamw')}"])
    refts = [store.resolve(n["run_id"]).config()["train"] for n in nodes if n["stage"] == "reft"]
    if refts:
        t = refts[0]
        schedule = "constant" if t["min_lr_frac"] == 1.0 and not t["warmup_frac"] else "warm-up + cosine"
        lrs = ", ".join(f"{lr:g}" for lr in sorted({r["lr"] for r in refts}))
        rows.append(["reFT", f"{t['iters']} steps × {t['batch_size']}, lr {lrs} ({schedule}; "
                             f"{load_reft_factor():g} × the fine-tuning lr)"])
    axes = defaultdict(set)
    for n in nodes:
        if n["stage"] == "finetune":
            for k, v in n["point"].items():
                axes[k].add(v)
    for k in sorted(axes):
        values = sorted(axes[k], key=str)
        shown = [_lr_name(kind, v) for v in values] if k == "lr" else [str(v) for v in values]
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
    from wrapperlab.experiments.configs import load_profiles

    return float(load_profiles()["reft_lr_factor"])


ACC_METRICS = ("acc_pt_cte0", "acc_pt_cte1", "acc_ft_cte0", "acc_ft_cte1")


def _finetune_cell(point: dict, group: list[dict], kind: str, paper_row: dict | None,
                   metrics: tuple[str, ...]) -> tuple[dict, list[str]]:
    """One grid cell over its seeds: the summary entry (mean ± CI per metric) and the table texts, the paper's
    value in parentheses after each accuracy."""
    cell: dict[str, Any] = {**point, "label": _cell_label(point, kind), "seeds": len(group)}
    texts = []
    for metric in metrics:
        cell[metric] = mean_ci([n["data"]["after"][metric] for n in group])
        texts.append(ci_text(cell[metric]) + (f" ({_paper_text(paper_row, metric)})" if metric.startswith("acc") else ""))
    return cell, texts


def _ft_curves(store, group: list[dict]) -> dict[str, list]:
    """Per metric, one curve per seed from the fine-tuning runs' logged evaluations."""
    out: dict[str, list] = defaultdict(list)
    for n in group:
        metrics = store.resolve(n["run_id"]).metrics()
        for key in ACC_METRICS:
            curve = [(m["step"], m[key]) for m in metrics if key in m]
            if curve:
                out[key].append(curve)
    return out


def pcfg_section(rep: dict, paper: dict, store_root: Path, figures: Path) -> tuple[Section, dict]:
    from wrapperlab.experiments.store import RunStore
    from wrapperlab.report.sweep_figures import behaviour_figure, finetune_curves_figure

    nodes, kind, store = rep["nodes"], "pcfg", RunStore(store_root)
    task, pt, ft = _operands(rep)
    sec = Section(f"{rep['spec']} ({rep['profile']} profile, seeds {sorted({n['point']['seed'] for n in nodes})})")
    summary: dict[str, Any] = {"task": task, "o_pt": pt, "o_ft": ft}
    _setup(sec, rep, store, kind)
    pts = [n for n in nodes if n["stage"] == "pretrain"]
    acc_pt = mean_ci([n["data"]["accuracy"].get(f"{task}/{pt}") for n in pts])
    acc_ft = mean_ci([n["data"]["accuracy"].get(f"{task}/{ft}") for n in pts])
    summary["pretrained_o_pt"], summary["pretrained_o_ft"] = acc_pt, acc_ft
    ref = paper.get("pretrained", {})
    sec.text(f"Pretrained models: {task} {pt} {ci_text(acc_pt)} % (paper {_paper_text(ref, 'o_pt')}), {task} {ft} "
             f"{ci_text(acc_ft)} % (paper {_paper_text(ref, 'o_ft')}). Paper values: {paper['source']}.")
    header = ["prior", "lr", "C_Tr"] + [f"{m} % ours (paper @1K / @10K)" for m in ("O_PT C_Te=0", "O_PT C_Te=1", "O_FT C_Te=0", "O_FT C_Te=1")]
    rows, cells, curves = [], [], {}
    for key, group in _groups(nodes, "finetune").items():
        point = dict(key)
        paper_row = _paper_row(paper, kind, point["lr"], point["c_tr"]) if point.get("prior") == "low" else None
        cell, texts = _finetune_cell(point, group, kind, paper_row, ACC_METRICS)
        rows.append([str(point.get("prior", "-")), _lr_name(kind, point["lr"]), f"{point['c_tr']:g}", *texts])
        cells.append(cell)
        curves[cell["label"]] = _ft_curves(store, group)
    sec.table(header, rows)
    summary["finetune"] = cells
    sec.figure(behaviour_figure(cells, figures / f"{rep['spec']}-behaviour.png", acc_pt),
               "Acc O_PT / O_FT after fine-tuning per cell (Fig. 6)")
    sec.figure(finetune_curves_figure(curves, figures / f"{rep['spec']}-ft-curves.png"),
               "accuracy vs fine-tuning step (Figs. 5, 68–75)")
    _pcfg_analyses(sec, rep, paper, figures, summary)
    return sec, summary


def _pcfg_analyses(sec: Section, rep: dict, paper: dict, figures: Path, summary: dict) -> None:
    from wrapperlab.report.sweep_figures import probe_seeds_figure, seeds_figure

    nodes, name = rep["nodes"], rep["spec"]
    prunes, probes, refts = _groups(nodes, "prune"), _groups(nodes, "probe"), _groups(nodes, "reft")
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
        label = _cell_label(point, "pcfg")
        rows.append([label, ci_text(after), ci_text(k_half, pct=False), f"{ci_text(probe_ft)} vs {ci_text(probe_rand)}",
                     " / ".join(ci_text(steps[c], pct=False) for c in ("reft", "scr+ft", "scr"))])
        shown = _wrapper_shown(after, k_half, steps)
        summary.setdefault("analysed", []).append({**point, "acc_pt_cte0_after": after, "k_to_half": k_half,
                                                   "probe_last": probe_ft, "probe_last_random": probe_rand,
                                                   "reft_steps_to_0.9": steps, "wrapper_shown": bool(shown)})
        verdicts.append((label, bool(shown),
                    f"Acc O_PT(C_Te=0) after FT {ci_text(after)} %; pruning restores half of it with K = "
                    f"{ci_text(k_half, pct=False)} rows (paper: {paper['claims'].get('pruning', '-')}); probe "
                    f"{ci_text(probe_ft)} % vs random init {ci_text(probe_rand)} %; reFT reaches 90 % at step "
                    f"{ci_text(steps['reft'], pct=False)}, Scr.+FT {ci_text(steps['scr+ft'], pct=False)} "
                    f"(paper: {paper['claims'].get('reft', '-')})"))
        tag = f"{name}-{_lr_name('pcfg', point['lr'])}-ctr{point['c_tr']:g}"
        if key in prunes:
            ks = prunes[key][0]["data"]["ks"]
            groups = {METRIC_LABELS[m]: [list(zip(ks, n["data"]["curves"][m])) for n in prunes[key]]
                      for m in ("acc_pt_cte0", "acc_ft_cte1") if m in prunes[key][0]["data"]["curves"]}
            figs.append((seeds_figure(groups, figures / f"prune-{tag}.png", "units pruned (K)", "accuracy (%)",
                                      f"pruning by pretraining-task saliency, {label}", logx=True),
                         f"pruning curves over seeds, {label} (Fig. 7)"))
        if key in probes:
            figs.append((probe_seeds_figure([n["data"] for n in probes[key]], figures / f"probe-{tag}.png",
                                            f"linear probes per block, {label}"),
                         f"probe accuracy per block over seeds, {label} (Fig. 8)"))
        if key in refts:
            groups = {c: [n["data"][c]["curve"] for n in refts[key] if c in n["data"]] for c in ("reft", "scr+ft", "scr")}
            figs.append((seeds_figure(groups, figures / f"reft-{tag}.png", "reFT step", "Acc O_PT, C_Te=0 (%)",
                                      f"reverse fine-tuning vs baselines, {label}", logx=True, threshold=0.9),
                         f"reFT vs Scr.+FT and Scr. over seeds, {label} (Fig. 9)"))
    if rows:
        sec.table(["cell", "O_PT C_Te=0 after FT %", "K to half", "probe last block: FT vs random %",
                   "reFT steps to 90 %: reFT / Scr.+FT / Scr."], rows)
    for verdict in verdicts:
        sec.verdict(*verdict)
    for fig in figs:
        sec.figure(*fig)


def _wrapper_shown(after: dict, k_half: dict, steps: dict[str, dict]) -> bool:
    """The paper's three signatures together: the behaviour is mostly gone after FT (< 50 %), a few units
    (K <= 15) hold it back, and reFT reaches 90 % in every seed while Scr.+FT never does, or later."""
    gone = after["mean"] is not None and after["mean"] < 0.5
    pruned = k_half["mean"] is not None and not k_half["missing"] and k_half["mean"] <= 15
    reft, scr = steps["reft"], steps["scr+ft"]
    revived = reft["mean"] is not None and not reft["missing"]
    measured = (scr["n"] or 0) + (scr["missing"] or 0) > 0  # no Scr.+FT run: nothing to be faster than
    faster = measured and (scr["mean"] is None or (revived and scr["mean"] > reft["mean"]))
    return gone and pruned and revived and faster


def _last_probe(data: dict, which: str) -> float:
    target = next(iter(data["accuracy"]))
    return data["accuracy"][target][which][-1]


def tracr_section(rep: dict, paper: dict, store_root: Path, figures: Path) -> tuple[Section, dict]:
    from wrapperlab.experiments.store import RunStore
    from wrapperlab.report.sweep_figures import behaviour_figure, finetune_curves_figure, seeds_figure

    nodes, store, name = rep["nodes"], RunStore(store_root), rep["spec"]
    program = rep.get("program", "counter")
    sec = Section(f"{name} ({rep['profile']} profile, seeds {sorted({n['point']['seed'] for n in nodes if 'seed' in n['point']})})")
    _setup(sec, rep, store, "tracr")
    sec.text(f"Compiled {program} fine-tuned with SGD; 'floor' is the best constant output, 'shortcut' the share "
             f"answering r(O_PT) + q on uncorrelated inputs. Paper values: {paper['source']}.")
    rows, cells, curves, summary = [], [], {}, {"program": program, "finetune": []}
    attention = _groups(nodes, "attention")
    for key, group in _groups(nodes, "finetune").items():
        point = dict(key)
        paper_row = _paper_row(paper, "tracr", point["lr"], point["c_tr"])
        cell, texts = _finetune_cell(point, group, "tracr", paper_row, ACC_METRICS + ("shortcut_cte0", "floor_pt_cte0"))
        row = [_lr_name("tracr", point["lr"]), f"{point['c_tr']:g}", *texts]
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
        curves[cell["label"]] = _ft_curves(store, group)
    summary["finetune"] = cells
    sec.table(["lr", "C_Tr", "O_PT C_Te=0 % ours (paper)", "O_PT C_Te=1", "O_FT C_Te=0", "O_FT C_Te=1",
               "answers r(O_PT)+q", "floor", "block-1 attention on a / b", "attention moved per block (TV %)"], rows)
    sec.figure(behaviour_figure(cells, figures / f"{name}-behaviour.png"), "accuracies after fine-tuning per cell")
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
    refts = _groups(nodes, "reft")
    if refts:
        summary["reft"] = []
        groups = {}
        for key, group in refts.items():
            point = dict(key)
            steps = mean_ci([n["data"]["first_step_at"].get("acc_pt_cte0", {}).get("0.9") for n in group])
            end = mean_ci([n["data"]["after"]["acc_pt_cte0"] for n in group])
            summary["reft"].append({**point, "steps_to_0.9": steps, "end": end})
            groups[f"FT {_cell_label(point, 'tracr')}"] = [
                [(m["step"], m["acc_pt_cte0"]) for m in store.resolve(n["run_id"]).metrics() if "acc_pt_cte0" in m]
                for n in group]
        sec.figure(seeds_figure(groups, figures / f"{name}-reft.png", "reFT step", "Acc O_PT, C_Te=0 (%)",
                                "reFT of the fine-tuned models", logx=True, threshold=0.9), "reFT curves over seeds")
        sec.text("reFT steps to 90 %: " + "; ".join(f"η_{_lr_name('tracr', r['lr'])} C_Tr={r['c_tr']:g}: "
                                                     f"{ci_text(r['steps_to_0.9'], pct=False)} (end {ci_text(r['end'])} %)"
                                                     for r in summary["reft"])
                 + f" (paper: {paper['claims'].get('reft', '-')})")
    return sec, summary


def _tracr_attention_verdict(sec: Section, cells: list[dict], paper: dict, program: str) -> None:
    """Max-identifier: does the smallest lr leave Block 0 (the sort) least moved, and fine-tune best?"""
    moved = [c for c in cells if c.get("attention_change")]
    if program != "max-identifier" or len(moved) < 2:
        return
    by_lr = sorted(moved, key=lambda c: LR_NAMES["tracr"].get(c["lr"], c["lr"]) if isinstance(c["lr"], str) else c["lr"])
    smallest = by_lr[0]["lr"]
    small = [c for c in moved if c["lr"] == smallest]
    large = [c for c in moved if c["lr"] != smallest]
    block0 = lambda cs: max(c["attention_change"][0]["mean"] for c in cs)  # noqa: E731
    kept = block0(small) < min(c["attention_change"][0]["mean"] for c in large)
    text = "; ".join(f"{c['label']}: Block 0 moved {ci_text(c['attention_change'][0])} %, Acc O_FT(C_Te=0) "
                     f"{ci_text(c['acc_ft_cte0'])} %" for c in by_lr)
    sec.verdict(f"η_{_lr_name('tracr', smallest)} keeps the Block-0 sort", kept,
                f"{text} (paper: {paper['claims'].get('attention', '-')})", words=("reproduced", "not reproduced at this scale"))


# -- rendering -------------------------------------------------------------------------------------------

INTRO = ("Written by `wrapperlab reproduce` / `wrapperlab report`. Our numbers are the mean ± 95 % t-interval over "
         "seeds; the paper's value follows in parentheses (PCFG: after 1K / 10K fine-tuning iterations). Each "
         "verdict line names the claim, whether our runs show it at this scale, and the numbers it rests on.")


def _markdown(sections: list[Section], out: Path) -> str:
    lines = ["# wrapperlab reproduction report", "", INTRO, ""]
    for sec in sections:
        lines += [f"## {sec.title}", ""]
        for kind, value in sec.blocks:
            if kind in ("text", "verdict"):
                lines += [("- " if kind == "verdict" else "") + value, ""]
            elif kind == "table":
                header, rows = value
                lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
            else:
                path, caption = value
                lines += [f"![{caption}]({path.relative_to(out)})", ""]
    return "\n".join(lines)


def _html(sections: list[Section]) -> str:
    def inline(text: str) -> str:
        text = html.escape(text)
        parts = text.split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    body = ["<h1>wrapperlab reproduction report</h1>", f"<p>{inline(INTRO)}</p>"]
    for sec in sections:
        body.append(f"<h2>{html.escape(sec.title)}</h2>")
        for kind, value in sec.blocks:
            if kind == "text":
                body.append(f"<p>{inline(value)}</p>")
            elif kind == "verdict":
                body.append(f"<p class='verdict'>{inline(value)}</p>")
            elif kind == "table":
                header, rows = value
                body.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                            + "</table>")
            else:
                path, caption = value
                data = base64.b64encode(path.read_bytes()).decode()
                body.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #bbb;padding:3px 6px}"
             "img{max-width:100%}.verdict{background:#f4f4f4;padding:6px;border-left:4px solid #888}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>wrapperlab report</title><style>{style}</style>" \
           f"</head><body>{''.join(body)}</body></html>\n"


def write_report(store_root: str | Path) -> dict[str, Path]:
    """Read every stored reproduction under ``store_root`` and write ``report/`` (HTML, Markdown, summary)."""
    from wrapperlab.training.checkpoint import atomic_write_text

    root = Path(store_root)
    reps = sorted((root / "reproductions").glob("*.json")) if (root / "reproductions").exists() else []
    if not reps:
        raise ConfigError("report", str(root), "a directory where `wrapperlab reproduce` has run (no reproductions/)")
    out = root / "report"
    figures = out / "figures"
    shutil.rmtree(figures, ignore_errors=True)  # generated: a figure of a cell no longer reproduced must not linger
    paper = paper_values()
    sections, summary = [], {}
    for path in reps:
        rep = json.loads(path.read_text())
        ref = paper.get(rep["spec"], {"source": "no reference values", "claims": {}, "pretrained": {}})
        if rep["kind"] == "pcfg":
            sec, numbers = pcfg_section(rep, ref, root, figures)
        elif rep["kind"] == "stories":
            from wrapperlab.report.stories_report import stories_section

            sec, numbers = stories_section(rep, ref, root, figures)
        else:
            sec, numbers = tracr_section(rep, ref, root, figures)
        sections.append(sec)
        summary[f"{rep['spec']}/{rep['profile']}"] = numbers
    atomic_write_text(out / "report.md", _markdown(sections, out))
    atomic_write_text(out / "report.html", _html(sections))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str) + "\n")
    return {"html": out / "report.html", "markdown": out / "report.md", "summary": out / "summary.json"}
