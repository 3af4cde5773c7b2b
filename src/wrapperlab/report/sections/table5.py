"""The paper's qualitative claims about Table 5 and Figs. 5-9 (docs/reproduce.md, "pcfg-table5"), each decided by its
rule in claims/verdicts.py where a reproduction has the cells it needs (a claim made for several lrs: once per lr),
read separately for every depth, pretraining length and fine-tuning protocol a spec varies (the paper makes the same
claims of its 50K-iteration Table 6)."""

from __future__ import annotations

from typing import Any

from wrapperlab.claims import verdicts as V
from wrapperlab.report.records import Record, groups
from wrapperlab.report.sections.common import lr_text
from wrapperlab.report.sections.pcfg_cells import GROUP_AXES, extra_of, grid_label

Claims = list[tuple[str, V.Verdict]]


def table5_claims(nodes: list[Record], early_by_cell: dict[tuple, dict[int, dict[str, float]]],
                  parts: dict[tuple, list[V.Verdict]]) -> Claims:
    """Every claim the reproduction can decide, with where it was read. ``parts``: each analysed cell's signature
    verdicts by (the other axes' values, prior, lr, C_Tr, reFT lr)."""
    verdicts: Claims = []
    for extra in sorted({extra_of(n.point) for n in nodes if n.stage == "finetune"}, key=str):
        label = grid_label({a: v for a, v in zip(GROUP_AXES, extra) if v is not None})
        mine = [n for n in nodes if extra_of(n.point) == extra]
        found = _Within(mine, early_by_cell).claims({k[1:]: v for k, v in parts.items() if k[0] == extra})
        verdicts += [(f"{where}{'; ' + label if label else ''}", verdict) for where, verdict in found]
    return verdicts


class _Within:
    """The fine-tunings and reFTs of one depth, length and protocol, read per (prior, lr, C_Tr) seed by seed."""

    def __init__(self, nodes: list[Record], early_by_cell: dict[tuple, dict[int, dict[str, float]]]):
        self.nodes, self.early_by_cell = nodes, early_by_cell
        fts = [n for n in nodes if n.stage == "finetune"]
        self.finetunes = {k: {n.seed: n for n in g} for k, g in groups(nodes, "finetune").items()}
        self.seeds = sorted({n.seed for n in fts})
        self.lrs = sorted({n.point["lr"] for n in fts}, key=str)
        self.priors = {n.point["prior"] for n in fts}
        self.fixed = {a: v for n in fts for a, v in n.point.items() if a in GROUP_AXES}

    def key(self, prior: str, lr: Any, c_tr: float) -> tuple:
        return tuple(sorted({**self.fixed, "prior": prior, "lr": lr, "c_tr": c_tr}.items()))

    def after(self, prior, lr, c_tr, metric) -> list[float | None] | None:
        found = self.finetunes.get(self.key(prior, lr, c_tr))
        return None if found is None else [found[s].result.after[metric] if s in found else None for s in self.seeds]

    def early(self, prior, lr, c_tr, metric) -> list[float | None] | None:
        found = self.early_by_cell.get(self.key(prior, lr, c_tr))
        return [found.get(s, {}).get(metric) for s in self.seeds] if found else None

    def gap(self, prior, lr, c_tr) -> list[float | None] | None:
        hi, lo = self.after(prior, lr, c_tr, "acc_ft_cte1"), self.after(prior, lr, c_tr, "acc_ft_cte0")
        return None if hi is None or lo is None else [None if a is None or b is None else a - b for a, b in zip(hi, lo)]

    def reft_steps(self, prior, lr) -> tuple[list, list] | None:
        rows = [n for n in self.nodes if n.stage == "reft" and n.point.get("prior") == prior
                and n.point["lr"] == lr and n.point["c_tr"] == 1.0 and n.point.get("reft_lr") == "M"]
        if not rows:
            return None
        found = {n.seed: n.result.reft for n in rows}
        return ([found[s].crossed() if s in found else None for s in self.seeds],
                [found[s].allowed() if s in found else 0 for s in self.seeds])

    def per_lr(self, lr: Any) -> Claims:
        """T1-T3 and T7 at one fine-tuning lr."""
        out: Claims = []
        name, priors = lr_text(lr), self.priors
        if "low" in priors and self.gap("low", lr, 1.0) and self.gap("low", lr, 0.0):
            out.append((f"η_{name}", V.correlation_only(self.gap("low", lr, 1.0), self.gap("low", lr, 0.0))))
        if {"low", "high"} <= priors and self.after("high", lr, 0.8, "acc_ft_cte0") \
                and self.after("low", lr, 0.8, "acc_ft_cte0"):
            out.append((f"η_{name}", V.relevant_capability_generalises(self.after("high", lr, 0.8, "acc_ft_cte0"),
                                                                       self.after("low", lr, 0.8, "acc_ft_cte0"))))
        if {"low", "high"} <= priors and self.after("high", lr, 1.0, "acc_pt_cte0") \
                and self.after("low", lr, 1.0, "acc_pt_cte0"):
            out.append((f"η_{name}", V.prior_protects(self.after("high", lr, 1.0, "acc_pt_cte0"),
                                                      self.after("low", lr, 1.0, "acc_pt_cte0"))))
        high, low = self.reft_steps("high", lr), self.reft_steps("low", lr)
        if high and low:
            out.append((f"η_{name}, reFT η_M", V.prior_speeds_revival(high[0], low[0], high[1], low[1])))
        return out

    def claims(self, parts: dict[tuple, list[V.Verdict]]) -> Claims:
        """T1-T8 over these nodes; ``parts``: the analysed cells' signatures by (prior, lr, C_Tr, reFT lr)."""
        verdicts: Claims = [found for lr in self.lrs for found in self.per_lr(lr)]
        pruned = parts.get(("low", "S", 1.0, "S")) or parts.get(("low", "S", 1.0, None))
        if pruned:
            verdicts.append(("low, η_S, C_Tr = 1", V.Verdict("T4: " + pruned[1].claim, pruned[1].outcome,
                                                             pruned[1].reason, pruned[1].numbers)))
        names = [f"{prior} η_{lr} C_Tr={c_tr:g}" + (f" reFT η_{r}" if r else "") for prior, lr, c_tr, r in parts]
        probes = [p[2] for p in parts.values()]
        if len(self.priors) > 1 and probes:
            verdicts.append(("every analysed cell", V.combine("T5: count(O_PT) stays decodable after fine-tuning",
                                                              probes, names)))
        speeds = [p[3] for p in parts.values()]
        if len(self.priors) > 1 and speeds:
            verdicts.append(("every analysed cell and reFT lr", V.combine("T6: reFT beats Scr.+FT at every prior",
                                                                          speeds, names)))
        if "high" in self.priors and "L" in self.lrs and self.early("high", "L", 0.0, "acc_pt_cte0"):
            verdicts.append(("high, η_L, C_Tr = 0", V.long_finetuning_removes(
                self.early("high", "L", 0.0, "acc_pt_cte0"), self.after("high", "L", 0.0, "acc_pt_cte0"))))
        return verdicts
