"""The PCFG data interventions (paper App. E): pretraining data mixed into fine-tuning (E.1), the synthetic
jailbreak tokens (E.2) and randFT (E.4), each against the same fine-tuning without the intervention.

Every intervention cell is also an ordinary analysed cell of the PCFG section (its own wrapper verdict, with the
never-had-it model and the random-init twin as controls); this part adds the comparisons with the cell fine-tuned
without the intervention — same prior, lr, C_Tr and seed — with the rules of claims/verdicts.py, and the jailbreak
table (Fig. 24 layout). Returns its verdicts for the report's claims list.
"""

from __future__ import annotations

from typing import Any

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.claims import verdicts as V
from wrapperlab.report.records import Record
from wrapperlab.report.render import Section
from wrapperlab.report.sections.common import lr_text
from wrapperlab.report.sections.pcfg_cells import pcfg_cell_label
from wrapperlab.report.tables import ci_text

Claims = list[tuple[str, V.Verdict]]


def _by_cell(nodes: list[Record], stage: str) -> dict[tuple, dict[int, Any]]:
    """A stage's node results per grid cell (the point without its seed), then per seed."""
    out: dict[tuple, dict[int, Any]] = {}
    for n in nodes:
        if n.stage == stage and "model" not in n.point:
            cell = tuple(sorted((k, v) for k, v in n.point.items() if k != "seed"))
            out.setdefault(cell, {})[n.seed] = n.result
    return out


def _paired(treated: dict[int, Any], control: dict[int, Any], read) -> tuple[list, list]:
    seeds = sorted(set(treated) & set(control))
    return [read(treated[s]) for s in seeds], [read(control[s]) for s in seeds]


def _swap(cell: tuple, **values: Any) -> tuple:
    return tuple(sorted({**dict(cell), **values}.items()))


def intervention_claims(sec: Section, nodes: list[Record], summary: dict[str, Any]) -> Claims:
    """The mixing, randFT and jailbreak comparisons a reproduction has the cells for (none for the other specs);
    the jailbreak table goes into ``summary["jailbreak"]``."""
    claims = _mixing(nodes) + _randft(nodes)
    jail = _jailbreak(sec, nodes, summary)
    if claims:
        sec.text("Data interventions (App. E) against the same fine-tuning without them (rules in docs/reproduce.md, "
                 "\"Data interventions\"):")
        for where, verdict in claims:
            sec.rule(f"{verdict.claim} ({where})", verdict.outcome, verdict.reason)
    return claims + jail


def _mixing(nodes: list[Record]) -> Claims:
    cells = _by_cell(nodes, "finetune")
    out: Claims = []
    for cell, treated in cells.items():
        share = dict(cell).get("mix_pt")
        control = cells.get(_swap(cell, mix_pt=0.0))
        if share and control:
            mixed, plain = _paired(treated, control, lambda r: r.after["acc_pt_cte0"])
            point = {k: v for k, v in cell if k != "mix_pt"}
            out.append((pcfg_cell_label(point), V.mixing_keeps(mixed, plain, f"{100 * share:g} %")))
    return out


def _randft(nodes: list[Record]) -> Claims:
    refts = _by_cell(nodes, "reft")
    out: Claims = []
    for cell, treated in refts.items():
        control = refts.get(_swap(cell, randft=False))
        if dict(cell).get("randft") is True and control:
            seeds = sorted(set(treated) & set(control))
            verdict = V.randft_revives_like_ft([treated[s].reft.crossed() for s in seeds],
                                               [control[s].reft.crossed() for s in seeds],
                                               [treated[s].reft.allowed() for s in seeds],
                                               [control[s].reft.allowed() for s in seeds])
            point = {k: v for k, v in cell if k not in ("randft", "reft_lr")}
            reft_lr = dict(cell).get("reft_lr")
            where = pcfg_cell_label(point) + (f", reFT η_{lr_text(reft_lr)}" if reft_lr is not None else "")
            out.append((where, verdict))
    return out


def _jailbreak(sec: Section, nodes: list[Record], summary: dict[str, Any]) -> Claims:
    """Fig. 24: count(O_PT) asked through each counting token, pretrained and fine-tuned model, per cell; the
    jailbreak rule per cell (the C_Tr = 0 cell, where nothing is hidden, is its negative control)."""
    cells = _by_cell(nodes, "jailbreak")
    if not cells:
        return []
    tokens = next(iter(next(iter(cells.values())).values())).tokens
    names = {"count": "T_NJ", "count_j1": "T_J1", "count_j2": "T_J2"}
    rows, out = [], []
    for cell, by_seed in sorted(cells.items(), key=str):
        label = pcfg_cell_label(dict(cell))
        stats = {which: {names.get(t, t): mean_ci([getattr(r, which)["cte0"][t] for r in by_seed.values()])
                         for t in tokens} for which in ("pretrained", "finetuned")}
        seeds = sorted(by_seed)
        jail = [sum(by_seed[s].finetuned["cte0"][t] for t in tokens[1:]) / len(tokens[1:]) for s in seeds]
        verdict = V.jailbreak_revives(jail, [by_seed[s].finetuned["cte0"]["count"] for s in seeds])
        out.append((label, verdict))
        summary.setdefault("jailbreak", []).append({"label": label, **stats, "outcome": verdict.outcome})
        rows.append([label, *(ci_text(c) for which in stats.values() for c in which.values()), verdict.outcome])
    heads = [f"{which} {names.get(t, t)} %" for which in ("pretrained", "fine-tuned") for t in tokens]
    sec.text("Synthetic jailbreak (App. E.2, Fig. 24): count(O_PT) on C_Te = 0 windows asked through the ordinary "
             "counting token the fine-tuning used (T_NJ) and through the tokens pretraining showed only with O_PT "
             "(T_J1, T_J2); mean ± 95 % CI over seeds. Paper: with T_NJ the fine-tuned model fails to count a, with "
             "T_J1/T_J2 it counts a if the pretraining prior of b was high enough.")
    sec.table(["cell", *heads, "jailbreak revives"], rows)
    for where, verdict in out:
        sec.rule(f"{verdict.claim} ({where})", verdict.outcome, verdict.reason)
    return out
