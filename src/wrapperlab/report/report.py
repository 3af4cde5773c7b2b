"""The reproduction report: our numbers (mean ± 95 % CI over seeds) beside the paper's, with figures and a
verdict per claim, as a self-contained HTML page, a Markdown twin and ``summary.json`` for machines.

Input is what ``reproduce`` stores per spec and profile (``<store>/reproductions/<spec>-<profile>.json``: the
grid point and outcome of every node); the paper's numbers come from ``report/data/paper_values.yaml``.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.errors import ConfigError
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

    def verdict(self, claim: str, shown: bool | None, numbers: str) -> None:
        word = {True: "wrapper shown", False: "not shown at this scale", None: "not measured"}[shown]
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


def pcfg_section(rep: dict, paper: dict, figures: Path) -> tuple[Section, dict]:
    nodes, kind = rep["nodes"], "pcfg"
    sec = Section(f"{rep['spec']} ({rep['profile']} profile, seeds {sorted({n['point']['seed'] for n in nodes})})")
    summary: dict[str, Any] = {}
    pts = [n for n in nodes if n["stage"] == "pretrain"]
    acc_a = mean_ci([n["data"]["accuracy"]["count/a"] for n in pts])
    acc_b = mean_ci([n["data"]["accuracy"]["count/b"] for n in pts])
    summary["pretrained_count_a"], summary["pretrained_count_b"] = acc_a, acc_b
    sec.text(f"Pretrained models: count a {ci_text(acc_a)} % (paper {paper['pretrained']['count_a']:g}), count b "
             f"{ci_text(acc_b)} % (paper {paper['pretrained']['count_b']:g}); {pts[0]['data'].get('params', '?')} "
             f"parameters, {pts[0]['data'].get('steps', '?')} pretraining steps. Paper values: {paper['source']}.")
    header = ["lr", "C_Tr"] + [f"{m} % ours (paper @1K / @10K)" for m in ("O_PT C_Te=0", "O_PT C_Te=1", "O_FT C_Te=0", "O_FT C_Te=1")]
    rows, cells = [], []
    for key, group in _groups(nodes, "finetune").items():
        point = dict(key)
        paper_row = _paper_row(paper, kind, point["lr"], point["c_tr"]) if point.get("prior") == "low" else None
        row = [_lr_name(kind, point["lr"]), f"{point['c_tr']:g}"]
        cell = {**point}
        for metric in ("acc_pt_cte0", "acc_pt_cte1", "acc_ft_cte0", "acc_ft_cte1"):
            stat = mean_ci([n["data"]["after"][metric] for n in group])
            cell[metric] = stat
            row.append(f"{ci_text(stat)} ({_paper_text(paper_row, metric)})")
        rows.append(row)
        cells.append(cell)
    sec.table(header, rows)
    summary["finetune"] = cells
    _pcfg_analyses(sec, nodes, paper, figures, summary)
    return sec, summary


def _pcfg_analyses(sec: Section, nodes: list[dict], paper: dict, figures: Path, summary: dict) -> None:
    from wrapperlab.report.figures import probe_figure, prune_figure, reft_figure

    prunes, probes, refts = _groups(nodes, "prune"), _groups(nodes, "probe"), _groups(nodes, "reft")
    rows, figs, verdicts = [], [], []
    for key in sorted(set(prunes) | set(refts)):
        point = dict(key)
        ft = [n for n in nodes if n["stage"] == "finetune" and {k: v for k, v in n["point"].items() if k != "seed"} == point]
        after = mean_ci([n["data"]["after"]["acc_pt_cte0"] for n in ft])
        k_half = mean_ci([n["data"]["k_to_half"] for n in prunes.get(key, [])])
        probe_ft = mean_ci([_last_probe(n["data"], "model") for n in probes.get(key, [])])
        probe_rand = mean_ci([_last_probe(n["data"], "random_init") for n in probes.get(key, [])])
        steps = {c: mean_ci([n["data"][c]["steps_to_0.9"] for n in refts.get(key, []) if c in n["data"]])
                 for c in ("reft", "scr+ft", "scr")}
        rows.append([_lr_name("pcfg", point["lr"]), f"{point['c_tr']:g}", ci_text(after), ci_text(k_half, pct=False),
                     f"{ci_text(probe_ft)} vs {ci_text(probe_rand)}",
                     " / ".join(ci_text(steps[c], pct=False) for c in ("reft", "scr+ft", "scr"))])
        shown = _wrapper_shown(after, k_half, steps)
        summary.setdefault("analysed", []).append({**point, "acc_pt_cte0_after": after, "k_to_half": k_half,
                                                   "probe_last": probe_ft, "probe_last_random": probe_rand,
                                                   "reft_steps_to_0.9": steps, "wrapper_shown": bool(shown)})
        verdicts.append((f"η_{_lr_name('pcfg', point['lr'])}, C_Tr={point['c_tr']:g}", bool(shown),
                    f"Acc O_PT(C_Te=0) after FT {ci_text(after)} %; pruning restores half of it with K = "
                    f"{ci_text(k_half, pct=False)} rows (paper: {paper['claims']['pruning']}); probe {ci_text(probe_ft)} % "
                    f"vs random init {ci_text(probe_rand)} %; reFT reaches 90 % at step {ci_text(steps['reft'], pct=False)}, "
                    f"Scr.+FT {ci_text(steps['scr+ft'], pct=False)} (paper: {paper['claims']['reft']})"))
        first = lambda group: min(group, key=lambda n: n["point"]["seed"])  # noqa: E731
        tag = f"{_lr_name('pcfg', point['lr'])}-ctr{point['c_tr']:g}"
        if key in prunes:
            figs.append((prune_figure(first(prunes[key])["data"], figures / f"prune-{tag}.png"), f"pruning, {tag}, first seed"))
        if key in probes:
            figs.append((probe_figure(first(probes[key])["data"], figures / f"probe-{tag}.png"), f"probes, {tag}, first seed"))
        if key in refts:
            figs.append((reft_figure(first(refts[key])["data"], figures / f"reft-{tag}.png"),
                         f"reFT vs baselines, {tag}, first seed"))
    if rows:
        sec.table(["lr", "C_Tr", "O_PT C_Te=0 after FT %", "K to half", "probe last block: FT vs random %",
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
    faster = scr["mean"] is None or (revived and scr["mean"] > reft["mean"])
    return gone and pruned and revived and faster


def _last_probe(data: dict, which: str) -> float:
    target = next(iter(data["accuracy"]))
    return data["accuracy"][target][which][-1]


def tracr_section(rep: dict, paper: dict, store_root: Path, figures: Path) -> tuple[Section, dict]:
    from wrapperlab.report.figures import reft_figure

    nodes = rep["nodes"]
    sec = Section(f"{rep['spec']} ({rep['profile']} profile, seeds {sorted({n['point']['seed'] for n in nodes if 'seed' in n['point']})})")
    sec.text(f"Compiled Counter fine-tuned with SGD; floors are the best constant output. Paper values: {paper['source']}.")
    rows, summary = [], {"finetune": []}
    for key, group in _groups(nodes, "finetune").items():
        point = dict(key)
        paper_row = _paper_row(paper, "tracr", point["lr"], point["c_tr"])
        row, cell = [_lr_name("tracr", point["lr"]), f"{point['c_tr']:g}"], dict(point)
        for metric in ("acc_pt_cte0", "acc_pt_cte1", "acc_ft_cte0", "acc_ft_cte1", "shortcut_cte0", "floor_pt_cte0"):
            stat = mean_ci([n["data"]["after"][metric] for n in group])
            cell[metric] = stat
            row.append(ci_text(stat) + (f" ({_paper_text(paper_row, metric)})" if metric.startswith("acc") else ""))
        attn = _groups(nodes, "attention").get(key, [])
        for token in ("a", "b"):
            cell[f"attention_{token}"] = mean_ci([n["data"]["after"][1][token] for n in attn])
        row.append(f"{ci_text(cell['attention_a'])} / {ci_text(cell['attention_b'])}")
        rows.append(row)
        summary["finetune"].append(cell)
    sec.table(["lr", "C_Tr", "O_PT C_Te=0 % ours (paper)", "O_PT C_Te=1", "O_FT C_Te=0", "O_FT C_Te=1",
               "answers count(a)+1", "floor", "block-1 attention a / b"], rows)
    prunes = [n for n in nodes if n["stage"] == "prune"]
    if prunes:
        gains = mean_ci([n["data"]["gain"] for n in prunes])
        margin = mean_ci([n["data"]["best"][0]["acc_pt_cte0"] - n["data"]["floor_pt_cte0"] for n in prunes])
        summary["single_weight_gain"], summary["single_weight_above_floor"] = gains, margin
        shown = (margin.get("mean") or 0) > 0.2
        sec.verdict("one pruned weight revives count(a)", shown,
                    f"best single weight gains {ci_text(gains)} points, ending {ci_text(margin)} points above the "
                    f"constant-output floor (paper: {paper['claims']['pruning']})")
    refts = [n for n in nodes if n["stage"] == "reft"]
    if refts:
        from wrapperlab.experiments.store import RunStore

        store = RunStore(store_root)
        summary["reft"] = []
        curves = {}
        for n in refts:
            steps = n["data"]["first_step_at"].get("acc_pt_cte0", {}).get("0.9")
            summary["reft"].append({**n["point"], "steps_to_0.9": steps, "end": n["data"]["after"]["acc_pt_cte0"]})
            metrics = store.resolve(n["run_id"]).metrics()
            curves[f"FT η_{_lr_name('tracr', n['point']['lr'])} seed {n['point']['seed']}"] = {
                "curve": [(m["step"], m["acc_pt_cte0"]) for m in metrics if "acc_pt_cte0" in m]}
        sec.figure(reft_figure(curves, figures / "tracr-reft.png", title="reFT of the C_Tr=1 models"), "reFT curves")
        sec.text("reFT steps to 90 %: " + "; ".join(f"η_{_lr_name('tracr', r['lr'])} seed {r['seed']}: {r['steps_to_0.9']}"
                                                     for r in summary["reft"]) + f" (paper: {paper['claims']['reft']})")
    return sec, summary


# -- rendering -------------------------------------------------------------------------------------------


def _markdown(sections: list[Section], out: Path) -> str:
    lines = ["# wrapperlab reproduction report", ""]
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

    body = ["<h1>wrapperlab reproduction report</h1>"]
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
    paper = paper_values()
    sections, summary = [], {}
    for path in reps:
        rep = json.loads(path.read_text())
        ref = paper.get(rep["spec"], {"source": "no reference values", "claims": {}, "pretrained": {}})
        if rep["kind"] == "pcfg":
            sec, numbers = pcfg_section(rep, ref, figures)
        else:
            sec, numbers = tracr_section(rep, ref, root, figures)
        sections.append(sec)
        summary[f"{rep['spec']}/{rep['profile']}"] = numbers
    atomic_write_text(out / "report.md", _markdown(sections, out))
    atomic_write_text(out / "report.html", _html(sections))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str) + "\n")
    return {"html": out / "report.html", "markdown": out / "report.md", "summary": out / "summary.json"}
