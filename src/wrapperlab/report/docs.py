"""Published numbers generated from results, never typed: Markdown files hold marked blocks that
``wrapperlab report DIR --docs FILE...`` rewrites from the store's ``summary.json``.

A block is::

    <!-- wrapperlab:KIND SPEC/PROFILE -->
    (generated; anything here is replaced)
    <!-- /wrapperlab -->

with KIND one of :data:`BLOCKS`. A block naming a reproduction the summary lacks, or an unknown kind, is one error
naming the file and the block, and no file is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from wrapperlab.claims.verdicts import outcome_counts
from wrapperlab.errors import ConfigError
from wrapperlab.files import atomic_write_text
from wrapperlab.report.sections.pcfg_cells import grid_label, protocol_label
from wrapperlab.report.tables import ci_text, effect_text, steps_text

_BLOCK = re.compile(r"(<!-- wrapperlab:(?P<kind>[\w-]+) (?P<key>[\w.-]+/[\w.-]+) -->\n)(?P<body>.*?)(<!-- /wrapperlab -->)",
                    re.S)


def _pct(values: list[float | None]) -> str:
    return " / ".join("never" if v is None else f"{100 * v:.1f}" for v in values)


def _budgets(speed: dict[str, Any]) -> str:
    """The step budgets of reFT and Scr.+FT ("200" when they had the same, "200 / 2000" when not)."""
    caps = sorted(set(speed["caps"]))
    control = sorted(set(speed.get("control_caps", speed["caps"])))
    return steps_text(caps) if caps == control else f"{steps_text(caps)} / {steps_text(control)}"


def _cell_label(cell: dict[str, Any]) -> str:
    """An analysed cell as the verdict tables name it: prior, protocol, lr, C_Tr (and the reFT lr)."""
    return ", ".join([str(cell.get("prior", "-")), *filter(None, [protocol_label(cell)]), f"η {cell['lr']}",
                      f"C_Tr = {cell['c_tr']:g}"]) + (f", reFT η {cell['reft_lr']}" if "reft_lr" in cell else "")


def _effect(num: dict[str, Any]) -> str:
    """A rule's effect as the claims tables write it: mean (95 % CI, n) vs margin; a claim made of parts: their
    outcome counts; "–" where the rule had nothing to measure."""
    if "effect" in num and num["effect"].get("mean") is not None:
        low, high = num.get("low"), num.get("high")
        ci = f" ({low:+.2f} to {high:+.2f}, n = {num['effect']['n']})" if low is not None and high is not None else ""
        if num.get("resolution_limited"):  # tied seeds: no width to print, and none to claim
            ci = f" (all {num['effect']['n']} seeds tied: resolution-limited)"
        return f"{num['effect']['mean']:+.2f}{ci} vs {num.get('margin', 0):g}"
    if "parts" in num:
        return outcome_counts([part["outcome"] for part in num["parts"]])
    return "–"


#: a rule calls "shown" when its interval's low end clears the margin: were the true effect exactly at the margin, a
#: two-sided 95 % interval does that 2.5 % of the time (less for an effect below the margin)
FALSE_SHOWN_RATE = 0.025


def _chance_line(tests: int) -> str:
    """How many of a block's tests would read "shown" by chance alone: about 120 part-tests are read across the
    reproductions, so a few "shown" are expected even where no effect reaches its margin."""
    return (f"\n{tests} tests at the 95 % level: were every true effect exactly at its margin, about "
            f"{FALSE_SHOWN_RATE * tests:.1f} would read **shown** by chance alone ({100 * FALSE_SHOWN_RATE:g} % each: one "
            "side of a two-sided interval); fewer where effects lie below their margins.\n")


def pcfg_verdicts(numbers: dict[str, Any]) -> str:
    """Per analysed cell: each part of the wrapper verdict, treated vs control per seed, and its outcome."""
    rows = ["| cell | seeds | pretrained → after FT, Acc O_PT C_Te=0 % | gain from pruning ≤ 15 units, FT vs never-had-it (points) "
            "| best-block probe %, FT vs strongest control | reFT vs Scr.+FT steps to 90 % (budgets) | verdict |",
            "|---|---|---|---|---|---|---|"]
    for cell in numbers.get("analysed", []):
        parts = list(cell["signatures"].values())  # behaviour, pruning, probe, speed (the claim words name the task)
        b, p, q, s = (part["numbers"] for part in parts)
        texts = [f"{_pct(b['treated'])} → {_pct(b['control'])}", f"{_pct(p['treated'])} vs {_pct(p['control'])}",
                 f"{_pct(q['treated'])} vs {_pct(q['control'])}",
                 f"{steps_text(s['treated_steps'])} vs {steps_text(s['control_steps'])} ({_budgets(s)})"]
        rows.append(f"| {_cell_label(cell)} | {', '.join(map(str, cell['seeds']))} | "
                    + " | ".join(f"{t} (**{part['outcome']}**)" for t, part in zip(texts, parts))
                    + f" | **{cell['verdict']}** |")
    tests = sum(len(cell["signatures"]) for cell in numbers.get("analysed", []))
    return "\n".join(rows) + "\n" + (_chance_line(tests) if tests else "")


def pcfg_behaviour(numbers: dict[str, Any]) -> str:
    """The pretrained model and every fine-tuning cell: mean ± 95 % CI over seeds."""
    rows = [f"| | Acc {numbers['task']} {numbers['o_pt']} C_Te=0 % | C_Te=1 | Acc {numbers['task']} {numbers['o_ft']} "
            "C_Te=0 % | C_Te=1 |", "|---|---|---|---|---|",
            f"| pretrained | {ci_text(numbers['pretrained_o_pt'])} | | {ci_text(numbers['pretrained_o_ft'])} | |"]
    for cell in numbers.get("finetune", []):
        rows.append(f"| {cell['label']} | " + " | ".join(ci_text(cell[m]) for m in
                                                          ("acc_pt_cte0", "acc_pt_cte1", "acc_ft_cte0", "acc_ft_cte1")) + " |")
    return "\n".join(rows) + "\n"


def wall_time(numbers: dict[str, Any]) -> str:
    """How long the reproduction's last call took, and how many nodes it had."""
    minutes, seconds = divmod(round(numbers.get("seconds") or 0), 60)
    return f"{numbers.get('nodes', '?')} nodes, {minutes} min {seconds} s in the call that wrote the report.\n"


def pcfg_localisation(numbers: dict[str, Any]) -> str:
    """Where the wrapper sits, per analysed cell: the share of the top pruned units in each block (B1 = first),
    the share in the latter half, and the probe's gain over the random-init twin per block (means over seeds)."""
    def per_block(cis: list[dict[str, Any]]) -> str:
        return " · ".join(f"B{i + 1} {100 * c['mean']:.0f}" if c.get("mean") is not None else f"B{i + 1} -"
                          for i, c in enumerate(cis))

    rows = ["| cell | top-15 pruned units per block, % | in the latter half, % | probe gain over random init per "
            "block, points |", "|---|---|---|---|"]
    for cell in numbers.get("localisation", []):
        label = ", ".join([grid_label(cell) or "-", f"η {cell['lr']}", f"C_Tr = {cell['c_tr']:g}"])
        rows.append(f"| {label} | {per_block(cell['pruned_share'])} | {ci_text(cell['latter_half'])} | "
                    f"{per_block(cell['probe_gain'])} |")
    return "\n".join(rows) + "\n"


#: the time-split block's rows: stage name in the docs, and the summary's stage key
_STAGE_NAMES = (("pretraining", "pretrain"), ("fine-tuning", "finetune"), ("Scr.+FT pretraining", "baseline"),
                ("Scr.+FT", "scrft"), ("reFT", "reft"), ("pruning", "prune"), ("probes", "probe"))


def pcfg_claims(numbers: dict[str, Any]) -> str:
    """The paper's claims about Table 5 and Figs. 5–9 (docs/reproduce.md), one row per claim and where it was read:
    its outcome and the effect it rests on (claims made of parts: their outcome counts)."""
    rows = ["| claim | where | outcome | effect (95 % CI, n) vs margin |", "|---|---|---|---|"]
    for c in numbers.get("claims", []):
        claim, where = c["claim"].replace("|", "/"), c.get("where", "").replace("|", "/")
        rows.append(f"| {claim} | {where} | **{c['outcome']}** | {_effect(c.get('numbers', {}))} |")
    tests = sum(len(c.get("numbers", {}).get("parts", [])) or 1 for c in numbers.get("claims", []))
    return "\n".join(rows) + "\n" + (_chance_line(tests) if tests else "")


def time_split(numbers: dict[str, Any]) -> str:
    """Where the computed nodes' time went, per stage (seconds summed over nodes; reproduce --profile-time)."""
    rows = ["| stage | nodes | wall s | train | eval | data | analysis | wall ÷ train |", "|---|---|---|---|---|---|---|---|"]
    split = numbers["time_split"]
    for name, key in _STAGE_NAMES + tuple((k, k) for k in split if k not in dict(_STAGE_NAMES).values()):
        if key in split:
            r = split[key]
            ratio = f"{r['wall/train']:.2f}" if "wall/train" in r else "–"
            rows.append(f"| {name} | {r['nodes']:.0f} | {r['wall']:.0f} | " + " | ".join(
                f"{r.get(c, 0.0):.0f}" if r.get(c) else "–" for c in ("train", "eval", "data", "analysis"))
                + f" | {ratio} |")
    return "\n".join(rows) + "\n"


def _rule_lines(verdicts: list[dict[str, Any]]) -> str:
    """Verdicts as Markdown list lines, the way the report writes them."""
    return "".join(f"- **{v['claim']}** — **{v['outcome']}**: {v['reason']}\n" for v in verdicts)


def tracr_reft(numbers: dict[str, Any]) -> str:
    """The Tracr Table 4 replica: steps to 90 % per reverse fine-tuned model (rows) and reFT lr (columns), mean ±
    95 % CI over the seeds that reached it, how many did, the end accuracy; then each reFT verdict and its reason."""
    entries = numbers.get("reft", [])
    lrs = list(dict.fromkeys(e["reft_lr"] for e in entries))
    whos = list(dict.fromkeys(e["who"] for e in entries))
    cell = {(e["who"], e["reft_lr"]): e for e in entries}
    rows = ["| reverse fine-tuned model | " + " | ".join(f"reFT η_{lr}: steps to 90 % (reached; end %)" for lr in lrs)
            + " |", "|---|" + "---|" * len(lrs)]
    for who in whos:
        texts = []
        for lr in lrs:
            e = cell.get((who, lr))
            texts.append("–" if e is None else f"{ci_text(e['steps_to_0.9'], pct=False)} ({e['reached']}/{e['seeds']}; "
                                               f"{ci_text(e['end'])})")
        rows.append(f"| {who} | " + " | ".join(texts) + " |")
    lines = _rule_lines(numbers.get("reft_verdicts", []))
    return "\n".join(rows) + "\n" + ("\n" + lines if lines else "")


def stories_behaviour(numbers: dict[str, Any]) -> str:
    """Every story model's Twist-story loss and judged Twist rates (mean ± 95 % CI over seeds)."""
    rows = ["| model | seeds | Twist-story loss | Twist written, requested % | Twist written, not requested % |",
            "|---|---|---|---|---|"]
    for c in numbers.get("models", []):
        rows.append(f"| {c['label']} | {c['seeds']} | {ci_text(c['twist_loss'], pct=False, digits=3)} | "
                    f"{ci_text(c['gen_twist'])} | {ci_text(c['gen_non'])} |")
    return "\n".join(rows) + "\n"


def stories_revival(numbers: dict[str, Any]) -> str:
    """reFT on Twist stories from each deletion vs the not-in-PT model: per seed, whether the deletion worked and the
    steps to each revival threshold, the rule's effect (log2 steps, not in PT minus reFT: mean and 95 % CI over the
    seeds where the deletion worked); then every stories rule's outcome and reason but the probes' (their block's)."""
    rows = ["| reFT from | deletion worked, per seed | steps to the loss threshold: reFT vs not in PT; effect | steps to "
            "the rate threshold: reFT vs not in PT; effect | budget |", "|---|---|---|---|---|"]
    for e in numbers.get("revival", []):
        texts = [f"{steps_text(r['treated'])} vs {steps_text(r['control'])}; {effect_text(r.get('effect'))} "
                 f"(**{r['outcome']}**)" for r in (e["twist_loss"], e["gen_twist"])]
        rows.append(f"| {e['label']} | {' / '.join('yes' if w else 'no' for w in e['worked'])} | {texts[0]} | "
                    f"{texts[1]} | {steps_text(sorted(set(e['twist_loss']['caps'])))} |")
    probes = [m["rule"] for m in numbers.get("probes", {}).values() if "rule" in m]
    return "\n".join(rows) + "\n\n" + _rule_lines([v for v in numbers.get("verdicts", []) if v not in probes])


def stories_probes(numbers: dict[str, Any]) -> str:
    """The Twist probe per layer, per design: every probed model and the pretrained model's random-init twin."""
    out = []
    for design, models in numbers.get("probes", {}).items():
        pt = models.get("pretrained", {})
        width = len(pt.get("per_layer", []))
        lines = [f"`{design}` | " + " | ".join(["B0 (embeddings)"] + [f"B{i}" for i in range(1, width)]) + " |",
                 "|---|" + "---|" * width]
        for label, m in models.items():
            if isinstance(m, dict) and "per_layer" in m:
                lines.append(f"| {label} | " + " | ".join(ci_text(c) for c in m["per_layer"]) + " |")
                if "random_per_layer" in m:
                    lines.append("| random init (pretrained's twin) | "
                                 + " | ".join(ci_text(c) for c in m["random_per_layer"]) + " |")
        lines[0] = "| " + lines[0]
        rule = models.get("rule")
        out.append("\n".join(lines) + "\n\n" + (_rule_lines([rule]) if rule else ""))
    return "\n".join(out)


def pcfg_jailbreak(numbers: dict[str, Any]) -> str:
    """The jailbreak table (Fig. 24): count(O_PT) through each counting token, pretrained and fine-tuned model."""
    cells = numbers.get("jailbreak", [])
    tokens = list(cells[0]["pretrained"]) if cells else []
    rows = ["| cell | " + " | ".join(f"pretrained {t} %" for t in tokens) + " | "
            + " | ".join(f"fine-tuned {t} %" for t in tokens) + " | jailbreak revives |",
            "|---|" + "---|" * (2 * len(tokens) + 1)]
    for c in cells:
        rows.append(f"| {c['label']} | " + " | ".join(ci_text(c[w][t]) for w in ("pretrained", "finetuned")
                                                       for t in tokens) + f" | **{c['outcome']}** |")
    return "\n".join(rows) + "\n"


def audits(docs_dir: Path, key: str) -> str:
    """One row per audit stored under ``docs_dir / key`` (each ``NAME/audit.json``, written by ``wrapperlab audit
    --out``): the pair, removal, relearning steps against each control, the verdict, the probe and pruning
    signatures beside it, and its wall time."""
    import json

    files = sorted((docs_dir / key).glob("*/audit.json"))
    if not files:
        raise KeyError(f"audit.json under {docs_dir / key}")
    rows = ["| audit | held-out log-prob BASE → FINETUNED (removed?) | relearning steps to 90 % of the gap per seed: "
            "FINETUNED · never-known twin · CONTROL | verdict | probe · pruning | wall time (2 cores) |",
            "|---|---|---|---|---|---|"]
    for file in files:
        r = json.loads(file.read_text())
        seeds, v = r["seeds"], r["verdicts"]
        mean = lambda key: sum(s[key]["logprob"] for s in seeds) / len(seeds)  # noqa: E731
        steps = [steps_text([s.get(k) for s in seeds]) for k in ("steps_real", "steps_never_known", "steps_control")
                 if k != "steps_control" or "control" in v]
        outcomes = [v["never_known"]["outcome"]] + ([v["control"]["outcome"]] if "control" in v else [])
        sig = r.get("signatures")  # absent from audits written before the signatures were built
        signatures = f"{sig['probe']['outcome']} · {sig['pruning']['outcome']}" if sig else "not measured"
        rows.append(f"| [{file.parent.name}]({key}/{file.parent.name}/audit.md) | {mean('base'):.3f} → {mean('finetuned'):.3f} "
                    f"({v['removed']['outcome']}) | {' · '.join(steps)} (vs twin: {outcomes[0]}"
                    + (f"; vs CONTROL: {outcomes[1]}" if len(outcomes) > 1 else "") + f") | **{r['verdict']['outcome']}** "
                    f"| {signatures} | {r['seconds']:.0f} s |")
    return "\n".join(rows) + "\n"


def _verdict_rows(numbers: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Every verdict a PCFG reproduction's tables show, as (what, outcome, effect): each analysed cell's parts and
    its wrapper verdict, then each claim."""
    rows = []
    for cell in numbers.get("analysed", []):
        label = _cell_label(cell)
        for part in cell["signatures"].values():
            rows.append((f"{label}: {part['claim']}", part["outcome"], _effect(part.get("numbers", {}))))
        rows.append((f"{label}: **the wrapper verdict**", cell["verdict"], ""))
    for c in numbers.get("claims", []):
        where = f" ({c['where']})" if c.get("where") else ""
        rows.append((f"{c['claim']}{where}", c["outcome"], _effect(c.get("numbers", {}))))
    return rows


def precision_check(docs_dir: Path, key: str) -> str:
    """The same reproduction's verdicts per training precision, side by side, from the snapshots under ``docs_dir /
    key`` (``report --snapshots`` writes one per precision into ``by-precision/``): one row per verdict, one column
    per precision (outcome and effect), and whether the outcome differs. Why: bf16 and fp32 runs of one spec give
    different numbers (bf16 where the CPU has it natively, fp32 elsewhere: ``precision: auto``), and a verdict that
    changes with the arithmetic is a finding about the arithmetic, not about the paper's claim."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for spec, summary in read_snapshots(docs_dir / key):
        found.setdefault(spec, {})[summary["precision"]] = summary
    if not found:
        raise KeyError(f"snapshots under {docs_dir / key}")
    out = []
    for spec, by in found.items():
        precisions = sorted(by)
        table: dict[str, dict[str, tuple[str, str]]] = {}
        for precision in precisions:
            for what, outcome, effect in _verdict_rows(by[precision]):
                table.setdefault(what, {})[precision] = (outcome, effect)
        if not table:  # a reproduction without PCFG verdict tables (Tracr, stories): nothing to set side by side
            continue
        sensitive = [what for what, per in table.items() if len({o for o, _ in per.values()}) > 1 or len(per) < len(by)]
        rules = {p: by[p].get("rules") for p in precisions}
        if len(precisions) < 2:
            head = f"`{spec}`: {len(table)} verdicts in {precisions[0]} only: nothing to compare yet"
        else:
            head = (f"`{spec}`: {len(table)} verdicts, **{len(sensitive)} precision-sensitive** (the outcome differs, "
                    "or one precision lacks it)")
        if len(set(rules.values())) > 1:
            head += (" — **decided by different rule versions** (" + ", ".join(f"{p}: {r or 1}" for p, r in rules.items())
                     + "), so a difference may be the rules', not the precision's")
        rows = [head, "", "| verdict | " + " | ".join(precisions) + " | precision-sensitive |",
                "|---|" + "---|" * (len(precisions) + 1)]
        for what, per in table.items():
            cells = [f"**{per[p][0]}**" + (f" {per[p][1]}" if per[p][1] else "") if p in per else "–"
                     for p in precisions]
            mark = "**yes**" if what in sensitive else "no"
            rows.append(f"| {what.replace('|', '/')} | " + " | ".join(cells) + f" | {mark} |")
        out.append("\n".join(rows) + "\n")
    return "\n".join(out)


#: blocks read from files beside the docs file (the key is a directory relative to it), not from a store's summary
FILE_BLOCKS: dict[str, Callable[[Path, str], str]] = {"audits": audits, "precision": precision_check}

BLOCKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "time-split": time_split, "tracr-reft": tracr_reft,
    "pcfg-verdicts": pcfg_verdicts, "pcfg-behaviour": pcfg_behaviour, "wall-time": wall_time,
    "pcfg-localisation": pcfg_localisation, "pcfg-claims": pcfg_claims,
    "pcfg-jailbreak": pcfg_jailbreak, "stories-behaviour": stories_behaviour, "stories-revival": stories_revival,
    "stories-probes": stories_probes,
}


def _render(path: Path, summary: dict[str, Any], strict: bool = True) -> tuple[str, str, int, list[str]]:
    """``path``'s text and its text with every block rendered: (old, new, blocks rendered, blocks left as they are —
    those whose reproduction ``summary`` lacks, where not ``strict``; strict, such a block is a ConfigError)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("docs", str(path), f"a readable Markdown file ({type(e).__name__})") from None
    count, left = 0, []

    def render(m: re.Match) -> str:
        nonlocal count
        kind, key = m.group("kind"), m.group("key")
        where = f"{path}: block wrapperlab:{kind} {key}"
        if kind in FILE_BLOCKS:
            try:
                body = FILE_BLOCKS[kind](Path(path).parent, key)
            except (KeyError, TypeError, ValueError, OSError) as e:
                raise ConfigError(where, key, f"a directory of results this block shows (missing {e})") from None
            count += 1
            return m.group(1) + body + m.group(5)
        if kind not in BLOCKS:
            raise ConfigError(where, kind, f"a block kind among {sorted([*BLOCKS, *FILE_BLOCKS])}")
        if key not in summary:
            if strict:
                raise ConfigError(where, key, f"a reproduction in this store's summary ({sorted(summary)})")
            left.append(f"{kind} {key}")
            return m.group(0)
        try:
            body = BLOCKS[kind](summary[key])
        except (KeyError, TypeError) as e:
            raise ConfigError(where, key, f"a reproduction with what this block shows (missing {e})") from None
        count += 1
        return m.group(1) + body + m.group(5)

    return text, _BLOCK.sub(render, text), count, left


def update_docs(summary: dict[str, Any], paths: list[Path], strict: bool = True) -> dict[Path, int]:
    """Rewrite every marked block of ``paths`` from ``summary``; returns blocks rewritten per file. All files are
    checked before any is written. Not ``strict`` (rendering from the committed snapshots, which hold only some
    reproductions): a block whose reproduction ``summary`` lacks is left as it is."""
    out = {Path(path): _render(Path(path), summary, strict) for path in paths}
    for path, (_, text, _, _) in out.items():
        atomic_write_text(path, text)
    return {path: count for path, (_, _, count, _) in out.items()}


# -- snapshots: what the blocks read, committed, so the published numbers can be regenerated and checked ----------


#: where `report --snapshots DIR` also writes each snapshot under its precision (by-precision/SPEC-PROFILE-fp32.json)
PRECISION_DIR = "by-precision"


def snapshot_name(key: str) -> str:
    """``pcfg-counter/quick`` -> ``pcfg-counter-quick.json``."""
    return key.replace("/", "-") + ".json"


def write_snapshots(summary: dict[str, Any], directory: Path, keys: list[str] | None = None) -> list[Path]:
    """One small JSON per reproduction of ``summary`` (or of ``keys``) under ``directory``: exactly the summary
    entry the blocks render from, in its order (a block lists cells and claims in the order it finds them), so
    `report --check-docs` can regenerate every block from the repository."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for key in keys if keys is not None else sorted(summary):
        text = json.dumps({"key": key, "summary": summary[key]}, indent=1) + "\n"
        path = directory / snapshot_name(key)
        atomic_write_text(path, text)
        written.append(path)
        precision = summary[key].get("precision")
        if precision:  # and one per precision, which the precision block reads side by side
            (directory / PRECISION_DIR).mkdir(exist_ok=True)
            path = directory / PRECISION_DIR / snapshot_name(f"{key}-{precision}")
            atomic_write_text(path, text)
            written.append(path)
    return written


def read_snapshots(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every snapshot under ``directory`` as (key, summary entry), in file-name order; a damaged one is a ConfigError
    naming it."""
    out = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            out.append((data["key"], data["summary"]))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise ConfigError("snapshot", str(path), f"a snapshot written by `wrapperlab report --snapshots` "
                                                     f"({type(e).__name__})") from None
    return out


def load_snapshots(directory: Path) -> dict[str, Any]:
    """Every snapshot under ``directory`` as one summary (key -> entry); a damaged one is a ConfigError naming it."""
    return dict(read_snapshots(directory))


@dataclass
class DocsCheck:
    """What `report --check-docs` found: blocks that differ from what the snapshots give, and blocks it could not
    check (no snapshot of their reproduction)."""

    differing: list[str]
    unchecked: list[str]
    checked: int


def check_docs(paths: list[Path], snapshots: dict[str, Any]) -> DocsCheck:
    """Render every block of ``paths`` from ``snapshots`` and compare with the committed text."""
    differing, unchecked, checked = [], [], 0
    for path in paths:
        old, new, count, left = _render(Path(path), snapshots, strict=False)
        checked += count
        unchecked += [f"{path}: {block}" for block in left]
        if old != new:
            olds = {(m.group("kind"), m.group("key")): m.group(0) for m in _BLOCK.finditer(old)}
            differing += [f"{path}: {kind} {key}" for m in _BLOCK.finditer(new)
                          for kind, key in [(m.group("kind"), m.group("key"))] if olds.get((kind, key)) != m.group(0)]
    return DocsCheck(differing, unchecked, checked)
