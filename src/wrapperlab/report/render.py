"""The reproduction report: our numbers (mean ± 95 % CI over seeds) beside the paper's, with figures and a
verdict per claim, as a self-contained HTML page, a Markdown twin and ``summary.json`` for machines.

Input is what ``reproduce`` stores per spec and profile (``<store>/reproductions/<spec>-<profile>.json``: the
grid point and outcome of every node), read back typed (report/records.py); the paper's numbers come from
``report/data/paper_values.yaml``.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from wrapperlab.claims import verdicts as V
from wrapperlab.errors import ConfigError
from wrapperlab.report.records import read_reproduction
from wrapperlab.settings import registry
from wrapperlab.timing import per_stage


def paper_values() -> dict[str, Any]:
    return yaml.safe_load(resources.files("wrapperlab.report").joinpath("data", "paper_values.yaml").read_text())


class Section:
    """One experiment's part of the report: headings, tables (rows of cells), figures, verdicts."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[tuple[str, Any]] = []

    def text(self, text: str) -> None:
        self.parts.append(("text", text))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.parts.append(("table", (header, rows)))

    def figure(self, path: Path, caption: str) -> None:
        self.parts.append(("figure", (path, caption)))

    def rule(self, claim: str, outcome: str, reason: str) -> None:
        """A verdict from claims/verdicts.py: shown / not shown / inconclusive, and what it rests on."""
        self.parts.append(("verdict", f"**{claim}** — **{outcome}**: {reason}"))


# -- rendering -------------------------------------------------------------------------------------------

INTRO = ("Written by `wrapperlab reproduce` / `wrapperlab report`. Our numbers are the mean ± 95 % t-interval over "
         "seeds; the paper's value follows in parentheses (PCFG: after 1K / 10K fine-tuning iterations). Each "
         "verdict line names the claim, whether our runs show it at this scale, and the numbers it rests on.")


def markdown_page(sections: list[Section], out: Path, title: str = "wrapperlab reproduction report",
                  intro: str = INTRO) -> str:
    """The sections as one Markdown page (figures linked relative to ``out``)."""
    lines = [f"# {title}", "", intro, ""]
    for sec in sections:
        lines += [f"## {sec.title}", ""]
        for kind, value in sec.parts:
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


def html_page(sections: list[Section], title: str = "wrapperlab reproduction report", intro: str = INTRO) -> str:
    """The sections as one self-contained HTML page (figures inlined)."""

    def inline(text: str) -> str:
        text = html.escape(text)
        parts = text.split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{inline(intro)}</p>"]
    for sec in sections:
        body.append(f"<h2>{html.escape(sec.title)}</h2>")
        for kind, value in sec.parts:
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
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>" \
           f"</head><body>{''.join(body)}</body></html>\n"


def write_report(store_root: str | Path) -> dict[str, Path]:
    """Read every stored reproduction under ``store_root`` and write ``report/`` (HTML, Markdown, summary).

    Two processes sharing a store may both finish a reproduction at once: they take turns (a lock file beside
    the report), so neither deletes the figures the other is writing; the later one writes the final report.
    """
    from wrapperlab.files import exclusive_lock

    root = Path(store_root)
    if not (root / "reproductions").is_dir():
        raise ConfigError("report", str(root), "a directory where `wrapperlab reproduce` has run (no reproductions/)")
    with exclusive_lock(root / "reproductions" / ".report.lock"):
        return _write_report(root)


def _precision(root: Path, nodes: list) -> str | None:
    """The training precision the reproduction's runs resolved to (``fp32``, ``bf16``; ``bf16+fp32`` when they
    differ), read from their stored configs: one spec gives different numbers per precision, so a summary (and its
    snapshot) says which it holds. None where no run config names one."""
    found = set()
    for run_id in {str(node.run_id) for node in nodes}:  # an analysis node names the run it analysed: read each once
        try:
            config = json.loads((root / run_id / "config.json").read_text())
        except (OSError, ValueError, AttributeError):
            continue
        train = config.get("train") if isinstance(config, dict) else None
        if isinstance(train, dict) and isinstance(train.get("precision"), str):
            found.add(train["precision"])
    return "+".join(sorted(found)) or None


def _write_report(root: Path) -> dict[str, Path]:
    from wrapperlab.files import atomic_write_text

    reps = sorted((root / "reproductions").glob("*.json"))
    if not reps:
        raise ConfigError("report", str(root), "a directory where `wrapperlab reproduce` has run (no reproductions/)")
    out = root / "report"
    figures = out / "figures"
    shutil.rmtree(figures, ignore_errors=True)  # generated: a figure of a cell no longer reproduced must not linger
    paper = paper_values()
    sections, summary = [], {}
    for path in reps:
        rep = read_reproduction(path)
        ref = paper.get(rep.spec, {"source": "no reference values", "claims": {}, "pretrained": {}})
        section = registry.resolve_entry(registry.get(rep.kind).report_section)
        sec, numbers = section(rep, ref, root, figures)
        numbers.update(nodes=len(rep.nodes), seconds=rep.seconds,  # the call that wrote the reproduction
                       time_split=per_stage(n.timing() for n in rep.nodes), precision=_precision(root, rep.nodes),
                       rules=V.RULES_VERSION)
        sections.append(sec)
        summary[f"{rep.spec}/{rep.profile}"] = numbers
    atomic_write_text(out / "report.md", markdown_page(sections, out))
    atomic_write_text(out / "report.html", html_page(sections))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str) + "\n")
    return {"html": out / "report.html", "markdown": out / "report.md", "summary": out / "summary.json"}
