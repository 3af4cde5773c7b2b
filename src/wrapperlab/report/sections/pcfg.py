"""The PCFG setting's report section: Tables 5 / 7 beside ours, Figs. 5-9 over seeds, the wrapper verdict.

It reads typed records (report/records.py) in three steps: **group** — each analysed cell with its per-seed results and
its negative controls (:class:`AnalysedCell`); **decide** — the rules of claims/verdicts.py on them
(:class:`CellVerdicts`, the Table 5 claims); **render** — tables, verdict lines and figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.claims import verdicts as V
from wrapperlab.data.priors import resolve_prior
from wrapperlab.report.figures.single import METRIC_LABELS
from wrapperlab.report.records import Record, Reproduced, by_seed, groups
from wrapperlab.report.render import Section
from wrapperlab.report.sections.common import lr_text, paper_text
from wrapperlab.report.sections.grid import ACC_METRICS, finetune_cell, ft_curves, paper_row, run_lr, setup_table
from wrapperlab.report.sections.interventions import intervention_claims
from wrapperlab.report.sections.pcfg_cells import (
    extra_of,
    grid_label,
    operands,
    paper_length,
    pcfg_cell_label,
    root_label,
    root_of,
    root_order,
)
from wrapperlab.report.sections.table5 import table5_claims
from wrapperlab.report.tables import ci_text
from wrapperlab.settings.pcfg.nodes import NEVER, PRETRAINED, ROOT_AXES
from wrapperlab.settings.pcfg.results import FinetuneResult, PretrainResult, ProbeRecord, PruneRecord, ReftCurves


def _head_rows(rep: Reproduced, store) -> list[list[str]]:
    """The setup table's model and pretraining rows, from the first pretraining run."""
    roots = rep.of("pretrain")
    if not roots:
        return []
    cfg = store.resolve(roots[0].run_id).config()
    m, d, t = cfg["model"], cfg["data"], cfg["train"]
    return [["model", f"{m['n_layers']} blocks × d={m['d_model']}, {m['n_heads']} heads, "
                      f"{roots[0].result.params} parameters"],
            ["pretraining", f"{t['iters']} steps × {t['batch_size']}, lr {t['lr']:g}; tasks "
                            f"{', '.join(d['tasks'])}; windows of {d['window']} terminals"]]


def pcfg_section(rep: Reproduced, paper: dict, store_root: Path, figures: Path) -> tuple[Section, dict]:
    from wrapperlab.runs.store import RunStore

    store = RunStore(store_root)
    task, pt, ft = operands(rep)
    sec = Section(f"{rep.spec} ({rep.profile} profile, seeds {sorted({n.seed for n in rep.nodes})})")
    summary: dict[str, Any] = {"task": task, "o_pt": pt, "o_ft": ft}
    setup_table(sec, rep, store, _head_rows(rep, store))
    _pretrained(sec, rep, paper, summary)
    early_by_cell = _finetuned(sec, rep, paper, store, figures, summary)
    cells = analysed_cells(rep, f"{task}/{pt}")
    decided = [cell_verdicts(cell) for cell in cells]
    _render_analyses(sec, rep, paper, figures, list(zip(cells, decided)), summary)
    parts = {(extra_of(c.point), c.point.get("prior"), c.point["lr"], c.point["c_tr"], c.reft_lr): d.parts
             for c, d in zip(cells, decided)}
    claims = table5_claims(rep.nodes, early_by_cell, parts)
    if claims:
        sec.text("The paper's claims about Table 5 and Figs. 5–9 (listed with their rules in docs/reproduce.md before "
                 "the first run), each against its control:")
        for where, verdict in claims:
            sec.rule(f"{verdict.claim} ({where})", verdict.outcome, verdict.reason)
        summary["claims"] = [{"where": where, **verdict.as_dict()} for where, verdict in claims]
    interventions = intervention_claims(sec, rep.nodes, summary)
    if interventions:
        summary.setdefault("claims", []).extend({"where": where, **v.as_dict()} for where, v in interventions)
    return sec, summary


# -- pretrained and fine-tuned models --------------------------------------------------------------------------


def _paper_pretrained(paper: dict, p_a: float, length: float | None) -> dict:
    """The paper's pretrained accuracies for a prior (and a pretraining length, where the spec varies it)."""
    if length is not None:
        return next((v for k, v in paper.get("pretrained_by_length", {}).get(p_a, {}).items()
                     if abs(float(k) - length) <= 1e-9 * length), {})
    return paper.get("pretrained_by_prior", {}).get(p_a) or (
        paper.get("pretrained", {}) if abs(paper.get("prior", p_a) - p_a) < 1e-9 else {})


def _longest(rep: Reproduced) -> int | None:
    return max((n.point["pt_iters"] for n in rep.of("pretrain") if "pt_iters" in n.point), default=None)


def _pretrained(sec: Section, rep: Reproduced, paper: dict, summary: dict) -> None:
    """Each pretraining's accuracy on O_PT and O_FT beside the paper's, per prior (never pooled)."""
    task, pt, ft = summary["task"], summary["o_pt"], summary["o_ft"]
    pts = rep.of("pretrain")
    summary["pretrained_o_pt"] = mean_ci([n.result.accuracy.get(f"{task}/{pt}") for n in pts])
    summary["pretrained_o_ft"] = mean_ci([n.result.accuracy.get(f"{task}/{ft}") for n in pts])
    texts, longest = [], _longest(rep)
    for key in sorted({root_of(n.point) for n in pts}, key=root_order):  # never pooled across priors or lengths
        mine = [n for n in pts if root_of(n.point) == key]
        point, p_a = mine[0].point, resolve_prior(mine[0].point["prior"])[0]
        ref = _paper_pretrained(paper, p_a, paper_length(paper, point.get("pt_iters"), longest))
        o_pt = mean_ci([n.result.accuracy.get(f"{task}/{pt}") for n in mine])
        o_ft = mean_ci([n.result.accuracy.get(f"{task}/{ft}") for n in mine])
        label = root_label(point)
        summary.setdefault("pretrained_by_prior", {})[point["prior"] if label == point["prior"] else label] = \
            {"o_pt": o_pt, "o_ft": o_ft}
        texts.append(f"{'prior ' + label} (P_T({pt}) = {p_a:g}): {task} {pt} {ci_text(o_pt)} % (paper "
                     f"{paper_text(ref, 'o_pt')}), {task} {ft} {ci_text(o_ft)} % (paper {paper_text(ref, 'o_ft')})")
    sec.text(f"Pretrained models — {'; '.join(texts)}. Paper values: {paper['source']}.")


def _early_by_seed(store, group: list[Record]) -> tuple[int, dict[int, dict[str, float]]]:
    """The "@1K" analog of a fine-tuning cell: the step at 10 % of its fine-tuning, and each seed's accuracies
    logged there (seeds whose run was not evaluated at that step — ``train.eval_at`` — are left out)."""
    step, out = 0, {}
    for n in group:
        run = store.resolve(n.run_id)
        step = run.config()["train"]["iters"] // 10
        record = next((m for m in run.metrics() if m["step"] == step), None)
        if record is not None:
            out[n.seed] = {m: record[m] for m in ACC_METRICS if m in record}
    return step, out


def _finetuned(sec: Section, rep: Reproduced, paper: dict, store, figures: Path,
               summary: dict) -> dict[tuple, dict[int, dict[str, float]]]:
    """The Table 5 layout (ours at 10 % of fine-tuning / end beside the paper's @1K / @10K), the behaviour and
    curves figures; returns each cell's "@1K" accuracies per seed (the claims read them)."""
    from wrapperlab.report.figures.sweep import behaviour_figure, finetune_curves_figure

    rows, cells, curves, early_by_cell, early_step = [], [], {}, {}, None
    by_root: dict[str, list[dict[str, Any]]] = {}
    longest = _longest(rep)
    for key, group in groups(rep.nodes, "finetune").items():
        point = dict(key)
        ref_row = paper_row(paper, run_lr(store, group[0]), point["c_tr"], resolve_prior(point["prior"])[0],
                            paper_length(paper, point.get("pt_iters"), longest)) if "prior" in point else None
        curves_here = ft_curves(store, group)
        early_step, early_by_cell[key] = _early_by_seed(store, group)
        early = {m: [early_by_cell[key].get(n.seed, {}).get(m) for n in group] for m in ACC_METRICS} \
            if early_by_cell[key] else None
        cell, texts = finetune_cell(point, group, pcfg_cell_label(point), ref_row, ACC_METRICS, early)
        extra = grid_label({k: v for k, v in point.items() if k != "prior"})
        prior = str(point.get("prior", "-")) + (f" ({extra})" if extra else "")
        rows.append([prior, lr_text(point["lr"]), f"{point['c_tr']:g}", *texts])
        cells.append(cell)
        by_root.setdefault(root_label({k: v for k, v in point.items() if k in ROOT_AXES}), []).append(cell)
        curves[cell["label"]] = curves_here
    ours = "ours" if not any(f"{m}_early" in c for c in cells for m in ACC_METRICS) \
        else f"ours @{early_step} / end"
    sec.text("After fine-tuning (Table 5 layout): mean ± 95 % CI over seeds; the paper's value after 1K / 10K of its "
             "10K fine-tuning steps in parentheses; ours after 10 % of fine-tuning (where it was evaluated) / at the end.")
    sec.table(["prior", "lr", "C_Tr"] + [f"{m} % {ours} (paper @1K / @10K)"
                                         for m in ("O_PT C_Te=0", "O_PT C_Te=1", "O_FT C_Te=0", "O_FT C_Te=1")], rows)
    summary["finetune"] = cells
    lines = {label: summary.get("pretrained_by_prior", {}).get(label, {}).get("o_pt") for label in by_root}
    sec.figure(behaviour_figure(by_root, figures / f"{rep.spec}-behaviour.png", lines),
               "Acc O_PT / O_FT after fine-tuning per cell, one panel per pretraining (Fig. 6)")
    sec.figure(finetune_curves_figure(curves, figures / f"{rep.spec}-ft-curves.png"),
               "accuracy vs fine-tuning step (Figs. 5, 68–75)")
    return early_by_cell


# -- group: an analysed cell with its controls ------------------------------------------------------------------


@dataclass
class AnalysedCell:
    """One analysed grid cell (and reFT lr) over its seeds, beside its negative controls: the pretrained model
    (behaviour), the never-had-it model pruned and probed the same way, the random-init twin (inside each probe) and
    Scr.+FT (inside each reFT); the pretrained model's own probe (Fig. 8a)."""

    key: tuple  # the cell: its point without the seed
    reft_lr: Any | None
    pair: str  # "task/O_PT"
    finetune: dict[int, FinetuneResult]
    prune: dict[int, PruneRecord]
    probe: dict[int, ProbeRecord]
    reft: dict[int, ReftCurves]
    pretrain: dict[int, PretrainResult]
    never_prune: dict[int, PruneRecord]
    never_probe: dict[int, ProbeRecord]
    pretrained_probe: dict[int, ProbeRecord]

    @property
    def point(self) -> dict[str, Any]:
        return dict(self.key)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.finetune)

    @property
    def label(self) -> str:
        return pcfg_cell_label(self.point) + ("" if self.reft_lr is None else f", reFT η {lr_text(self.reft_lr)}")

    @property
    def tag(self) -> str:
        """A file name for this cell's figures."""
        point = self.point
        return "-".join([*(f"{prefix}{point[a]}" for a, prefix in (("prior", ""), ("blocks", "b"), ("pt_iters", "pt"),
                                                                    ("mix_pt", "mix"), ("randft", "randft"))
                           if a in point), lr_text(point["lr"]), f"ctr{point['c_tr']:g}"])


def _analysed_keys(prunes: dict, probes: dict, refts: dict) -> list[tuple[tuple, Any]]:
    """(cell key, reFT lr or None) for every analysed cell: one entry per reFT lr it was reverse fine-tuned at."""
    out = set()
    for key in refts:
        point = dict(key)
        lr = point.pop("reft_lr", None)
        out.add((tuple(sorted(point.items())), lr))
    with_reft = {cell for cell, _ in out}
    out |= {(key, None) for key in set(prunes) | set(probes) if key not in with_reft}
    return sorted(((cell, lr) for cell, lr in out if "lr" in dict(cell)), key=lambda c: (c[0], str(c[1])))


def analysed_cells(rep: Reproduced, pair: str) -> list[AnalysedCell]:
    """Every analysed cell with its per-seed results and its controls' (those of the same pretraining)."""
    nodes = rep.nodes
    prunes, probes, refts = groups(nodes, "prune"), groups(nodes, "probe"), groups(nodes, "reft")
    finetunes = groups(nodes, "finetune")

    def of_root(stage: str, model: str | None = None) -> dict[tuple, dict[int, Any]]:
        out: dict[tuple, dict[int, Any]] = {}
        for n in nodes:
            if n.stage == stage and n.point.get("model") == model:
                out.setdefault(root_of(n.point), {})[n.seed] = n.result
        return out

    never_prune, never_probe = of_root("prune", NEVER), of_root("probe", NEVER)
    pre_probe, pretrained = of_root("probe", PRETRAINED), of_root("pretrain")
    cells = []
    for key, reft_lr in _analysed_keys(prunes, probes, refts):
        point = dict(key)
        reft_key = key if reft_lr is None else tuple(sorted({**point, "reft_lr": reft_lr}.items()))
        mine = root_of(point)
        cells.append(AnalysedCell(key, reft_lr, pair, by_seed(finetunes.get(key, [])), by_seed(prunes.get(key, [])),
                                  by_seed(probes.get(key, [])), by_seed(refts.get(reft_key, [])),
                                  pretrained.get(mine, {}), never_prune.get(mine, {}), never_probe.get(mine, {}),
                                  pre_probe.get(mine, {})))
    return cells


# -- decide ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellVerdicts:
    """A cell's wrapper verdict and its four signatures (behaviour, pruning, probe, reFT speed), worded for its task."""

    wrapper: V.Verdict
    parts: list[V.Verdict]


def _worded(verdict: V.Verdict, pair: str) -> V.Verdict:
    """A rule's words for the cell's pretraining task: the rules speak of count(O_PT); the Indexer's is index(O_PT)."""
    task = pair.split("/")[0]
    if task == "count":
        return verdict
    say = lambda text: text.replace("count(O_PT)", f"{task}(O_PT)")  # noqa: E731
    return V.Verdict(say(verdict.claim), verdict.outcome, say(verdict.reason), verdict.numbers)


def cell_verdicts(cell: AnalysedCell) -> CellVerdicts:
    """The wrapper verdict of one analysed cell from its per-seed measurements and their negative controls."""
    seeds = cell.seeds

    def per_seed(table: dict[int, Any], read) -> list:
        return [read(table[s]) if s in table else None for s in seeds]

    behaviour = V.behaviour_hidden(per_seed(cell.pretrain, lambda r: r.accuracy.get(cell.pair)),
                                   per_seed(cell.finetune, lambda r: r.after["acc_pt_cte0"]))
    pruning = V.pruning_revival(per_seed(cell.prune, PruneRecord.gain), per_seed(cell.never_prune, PruneRecord.gain))
    probing = V.probe_readout(per_seed(cell.probe, ProbeRecord.best),
                              [per_seed(cell.probe, lambda r: r.best("random_init")),
                               per_seed(cell.never_probe, ProbeRecord.best)])
    speed = V.revival_speed(per_seed(cell.reft, lambda r: r.reft.crossed()),
                            per_seed(cell.reft, lambda r: r.scr_ft.crossed() if r.scr_ft else None),
                            [cell.reft[s].reft.allowed() if s in cell.reft else 0 for s in seeds],
                            [cell.reft[s].scr_ft.allowed() if s in cell.reft and cell.reft[s].scr_ft else 0
                             for s in seeds])
    parts = [_worded(v, cell.pair) for v in (behaviour, pruning, probing, speed)]
    return CellVerdicts(_worded(V.pcfg_wrapper(behaviour, pruning, probing, speed), cell.pair), parts)


# -- render ------------------------------------------------------------------------------------------------------


def localisation(prune: PruneRecord | None, probe: ProbeRecord | None, k: int = V.PRUNE_K_MAX) -> dict[str, Any]:
    """Where a model's wrapper sits, for one seed: the share of its top-``k`` pruned units in each block, the share in
    the latter half of the blocks (the paper: wrappers are "localizable ... in the latter half of the network"),
    and per block how much better a probe reads count(O_PT) than in the random-init twin."""
    out: dict[str, Any] = {}
    if prune and prune.top_units:
        top = prune.top_units[:k]
        n_blocks = len(probe.layers) - 1 if probe else 1 + max(u["block"] for u in prune.top_units)
        out["pruned_share"] = [sum(u["block"] == b for u in top) / len(top) for b in range(n_blocks)]
        out["latter_half"] = sum(u["block"] >= n_blocks / 2 for u in top) / len(top)
    if probe:
        acc = probe.accuracy[next(iter(probe.accuracy))]
        out["probe_gain"] = [m - r for m, r in zip(acc["model"][1:], acc["random_init"][1:])]
    return out


def _localisation_row(label: str, prunes: dict[int, PruneRecord], probes: dict[int, ProbeRecord]
                      ) -> tuple[list[str], dict]:
    """One table row over seeds: mean share of the top units per block, the latter-half share, the probe gain."""
    per_seed = [localisation(prunes.get(s), probes.get(s)) for s in sorted(set(prunes) | set(probes))]

    def blocks(key: str) -> tuple[str, list[dict]]:
        rows = [d[key] for d in per_seed if key in d]
        if not rows:
            return "-", []
        cis = [mean_ci([r[b] for r in rows if b < len(r)]) for b in range(max(map(len, rows)))]
        return " · ".join(f"B{b + 1} {ci_text(c)}" for b, c in enumerate(cis)), cis

    shares, share_cis = blocks("pruned_share")
    gains, gain_cis = blocks("probe_gain")
    latter = mean_ci([d["latter_half"] for d in per_seed if "latter_half" in d])
    return [label, shares, ci_text(latter), gains], {"pruned_share": share_cis, "latter_half": latter,
                                                      "probe_gain": gain_cis}


def _stat_text(verdict: V.Verdict) -> str:
    """Treated vs control means of a rule, in % (over the seeds that have them)."""
    t, c = (mean_ci(verdict.numbers.get(k, [])) for k in ("treated", "control"))
    return f"{ci_text(t)} vs {ci_text(c)}"


def _cell_row(cell: AnalysedCell, decided: CellVerdicts) -> list[str]:
    """The analysed cells' table row: each signature's treated vs control numbers, and the wrapper verdict."""
    behaviour, pruning, probing, _ = decided.parts
    never_probe = mean_ci([r.best() for r in cell.never_probe.values()])
    random_probe = mean_ci([r.best("random_init") for r in cell.probe.values()])
    pre_probe = mean_ci([r.best() for r in cell.pretrained_probe.values()])
    steps = {name: mean_ci([c.curves()[name].crossed() for c in cell.reft.values() if name in c.curves()])
             for name in ("reft", "scr+ft")}
    return [cell.label, _stat_text(behaviour), _stat_text(pruning),
            f"{ci_text(mean_ci(probing.numbers['treated']))} (pretrained {ci_text(pre_probe)}) vs "
            f"{ci_text(random_probe)} / {ci_text(never_probe)}",
            " vs ".join(ci_text(steps[c], pct=False) for c in ("reft", "scr+ft")), decided.wrapper.outcome]


def _cell_figures(cell: AnalysedCell, name: str, figures: Path, drawn: bool) -> list[tuple[Path, str]]:
    """A cell's pruning and probe figures (once per cell, however many reFT lrs it has) and its reFT figure."""
    from wrapperlab.report.figures.sweep import probe_seeds_figure, seeds_figure

    out, label, tag = [], cell.label, f"{name}-{cell.tag}"
    prunes = [cell.prune[s] for s in sorted(cell.prune)]
    if prunes and not drawn:
        ks = prunes[0].ks
        curves = {METRIC_LABELS[m]: [list(zip(ks, r.curves[m])) for r in prunes]
                  for m in ("acc_pt_cte0", "acc_ft_cte1") if m in prunes[0].curves}
        if cell.never_prune:
            curves["never-had-it model: " + METRIC_LABELS["acc_pt_cte0"]] = [
                list(zip(r.ks, r.curves["acc_pt_cte0"])) for r in cell.never_prune.values()]
        out.append((seeds_figure(curves, figures / f"prune-{tag}.png", ("units pruned (K)", "accuracy (%)",
                                 f"pruning by pretraining-task saliency, {label}"), logx=True),
                    f"pruning curves over seeds, {label}, beside the never-had-it model (Fig. 7)"))
    if cell.probe and not drawn:
        others = {"pretrained model (Fig. 8a)": list(cell.pretrained_probe.values()),
                  "never-had-it model": list(cell.never_probe.values())}
        out.append((probe_seeds_figure([cell.probe[s] for s in sorted(cell.probe)], figures / f"probe-{tag}.png",
                                       f"linear probes per block, {label}", others),
                    f"probe accuracy per block over seeds, {label}, beside the pretrained model, the never-had-it "
                    "model and the random-init twin (Fig. 8)"))
    if cell.reft:
        curves = {c: [r.curves()[c].curve for s, r in sorted(cell.reft.items()) if c in r.curves()]
                  for c in ("reft", "scr+ft", "scr")}
        rtag = tag if cell.reft_lr is None else f"{tag}-reft{lr_text(cell.reft_lr)}"
        out.append((seeds_figure(curves, figures / f"reft-{rtag}.png", ("reFT step", "Acc O_PT, C_Te=0 (%)",
                                 f"reverse fine-tuning vs baselines, {label}"), logx=True, threshold=0.9),
                    f"reFT vs Scr.+FT and Scr. over seeds, {label} (Fig. 9)"))
    return out


def _render_analyses(sec: Section, rep: Reproduced, paper: dict, figures: Path,
                     decided: list[tuple[AnalysedCell, CellVerdicts]], summary: dict) -> None:
    """The analysed cells' table, where the wrapper sits, a verdict line per cell, the figures."""
    rows, figs, where, drawn_cells = [], [], [], set()
    for cell, verdicts in decided:
        rows.append(_cell_row(cell, verdicts))
        summary.setdefault("analysed", []).append({**cell.point, **({} if cell.reft_lr is None else
                                                                     {"reft_lr": cell.reft_lr}),
                                                   "seeds": cell.seeds, "verdict": verdicts.wrapper.outcome,
                                                   "signatures": {p.claim: p.as_dict() for p in verdicts.parts}})
        drawn = cell.key in drawn_cells  # a cell reverse fine-tuned at several lrs: its pruning and probe figures once
        drawn_cells.add(cell.key)
        if not drawn and (cell.prune or cell.probe):
            row, numbers = _localisation_row(pcfg_cell_label(cell.point), cell.prune, cell.probe)
            where.append(row)
            summary.setdefault("localisation", []).append({**cell.point, **numbers})
        figs += _cell_figures(cell, rep.spec, figures, drawn)
    if rows:
        sec.text("Each analysed cell against its negative controls (mean ± 95 % CI over seeds; rules in "
                 "docs/reproduce.md): the pretrained model (behaviour), the never-had-it model — the Scr.+FT "
                 "pretraining, pruned and probed exactly like the fine-tuned one — and a random-init twin (probe).")
        sec.table(["cell", "Acc O_PT C_Te=0 %: pretrained vs after FT",
                   f"gain from pruning ≤ {V.PRUNE_K_MAX} units %: FT vs never-had-it",
                   "best-block probe %: FT (pretrained) vs random init / never-had-it", "reFT steps to 90 %: reFT vs Scr.+FT",
                   "wrapper"], rows)
    if where:
        sec.text(f"Where the wrapper sits (mean ± 95 % CI over seeds; blocks B1 … after the embeddings). The paper: "
                 f"wrappers are localisable \"in the latter half of the network\" (protocol.md §1.3). Pruned: the share "
                 f"of the top {V.PRUNE_K_MAX} units by pretraining-task saliency in each block; probe: accuracy of a "
                 "count(O_PT) probe after each block minus the random-init twin's.")
        sec.table(["cell", f"top-{V.PRUNE_K_MAX} pruned units per block (share)", "share in the latter half",
                   "probe gain over random init per block"], where)
    for cell, verdicts in decided:
        sec.rule(f"{cell.label}: {verdicts.wrapper.claim}", verdicts.wrapper.outcome,
                 "; ".join(f"{p.claim} — {p.outcome} ({p.reason})" for p in verdicts.parts)
                 + f". Paper: {paper['claims'].get('pruning', '-')}; {paper['claims'].get('reft', '-')}")
    for fig in figs:
        sec.figure(*fig)
