"""The counter study behind ``make demo``: pretrain, fine-tune a (lr x C_Tr) grid, and analyse.

For each seed: pretrain once; fine-tune to count O_FT = b for every (lr, C_Tr) of the grid; then, on
the cells named in ``analyse_c_tr``, look for a wrapper three ways — prune by pretraining-task
saliency, probe for count(O_PT) after every block, and reverse fine-tune beside the Scr.+FT and Scr.
baselines. Every stage is a content-addressed run or analysis, so re-running finishes only what is
missing. Numbers are summarised per cell as mean and 95 % CI over seeds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from wrapperlab.analysis.probing import ProbeConfig
from wrapperlab.analysis.pruning import PruneConfig
from wrapperlab.analysis.stats import mean_ci
from wrapperlab.experiments.analyses import probe_run, prune_run
from wrapperlab.experiments.configs import finetune_config, parse_lr, pretrain_config, profile
from wrapperlab.experiments.pipeline import Say, finetune, pretrain
from wrapperlab.experiments.reft import run_reft
from wrapperlab.experiments.store import RunStore, run_id
from wrapperlab.training.checkpoint import atomic_write_text
from wrapperlab.training.config import Runtime


@dataclass
class StudyConfig:
    profile: str = "quick"
    seeds: list[int] = field(default_factory=lambda: [0])
    lrs: list[str | float] | None = None  # default: the profile's demo lrs
    c_tr: list[float] | None = None  # default: the profile's demo C_Tr values
    analyse_c_tr: list[float] = field(default_factory=lambda: [1.0])
    analyse_lrs: list[str | float] | None = None  # default: the profile's demo analyse_lrs (else every lr)
    analyses: bool = True
    baselines: bool = True
    prune: PruneConfig = PruneConfig(ks=(0, 1, 2, 3, 5, 10, 15, 20, 50))
    probe_iters: int | None = None  # default: the profile's


def _last(values: list[float]) -> float:
    return values[-1]


def run_study(cfg: StudyConfig, store: RunStore, runtime: Runtime = Runtime(), say: Say = print) -> dict[str, Any]:
    prof = profile(cfg.profile)
    lrs = [parse_lr(v) for v in (cfg.lrs or prof["demo"]["lrs"])]
    c_trs = list(cfg.c_tr if cfg.c_tr is not None else prof["demo"]["c_tr"])
    probe_cfg = ProbeConfig(iters=cfg.probe_iters or prof.get("probe", {}).get("iters", 4000))
    analyse_lrs = [parse_lr(v) for v in (cfg.analyse_lrs or prof["demo"].get("analyse_lrs") or lrs)]
    cells: list[dict[str, Any]] = []
    for seed in cfg.seeds:
        pt = pretrain(pretrain_config(cfg.profile, {"seed": seed}), store, runtime, say)
        pt_probe = probe_run(store, pt.run.id, probe_cfg, seed=seed, say=say).data if cfg.analyses else None
        for lr in lrs:
            for c_tr in c_trs:
                ft = finetune(finetune_config(pt.run.id, cfg.profile, {"train.lr": lr, "data.c_tr": c_tr, "seed": seed}),
                              store, runtime, say)
                cell: dict[str, Any] = {
                    "seed": seed, "lr": lr, "c_tr": c_tr, "pretrain": pt.run.id, "run": ft.run.id,
                    "pretrained_count_a": pt.result["accuracy"].get("count/a"),
                    "before": ft.result["before"], "after": ft.result["after"],
                }
                if cfg.analyses and c_tr in cfg.analyse_c_tr and lr in analyse_lrs:
                    pr = prune_run(store, ft.run.id, cfg.prune, seed=seed, say=say).data
                    cell["prune"] = {"ks": pr["ks"], "acc_pt_cte0": pr["curves"]["acc_pt_cte0"],
                                     "acc_ft_cte1": pr["curves"]["acc_ft_cte1"], "k_to_half": pr["k_to_half"],
                                     "top_units": pr["top_units"][:15]}
                    probe = probe_run(store, ft.run.id, probe_cfg, seed=seed, say=say).data
                    target = next(iter(probe["accuracy"]))  # count of O_PT
                    cell["probe"] = {"layers": probe["layers"], "target": target,
                                     "finetuned": probe["accuracy"][target]["model"],
                                     "pretrained": pt_probe["accuracy"][target]["model"],
                                     "random_init": probe["accuracy"][target]["random_init"],
                                     "majority": probe["majority"][target]}
                    reft = run_reft(store, ft.run.id, cfg.profile, baselines=cfg.baselines, runtime=runtime, say=say)
                    cell["reft"] = reft.summary()
                cells.append(cell)
    summary = {"config": {"profile": cfg.profile, "seeds": cfg.seeds, "lrs": lrs, "c_tr": c_trs,
                          "analyse_c_tr": cfg.analyse_c_tr, "analyse_lrs": analyse_lrs, "prune": cfg.prune.model_dump(mode="json"),
                          "probe": probe_cfg.model_dump(mode="json")},
               "cells": cells, "aggregate": aggregate(cells)}
    path = store.root / "studies" / (run_id("study", summary["config"]) + ".json")
    atomic_write_text(path, json.dumps(summary, indent=1) + "\n")
    summary["path"] = str(path)
    return summary


def aggregate(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (lr, C_Tr): mean and 95 % CI over seeds of the headline numbers."""
    rows = []
    for key in sorted({(c["lr"], c["c_tr"]) for c in cells}, key=lambda k: (-k[0], k[1])):
        group = [c for c in cells if (c["lr"], c["c_tr"]) == key]
        row: dict[str, Any] = {"lr": key[0], "c_tr": key[1], "seeds": [c["seed"] for c in group]}
        for name in ("acc_ft_cte0", "acc_ft_cte1", "acc_pt_cte0", "acc_pt_cte1"):
            row[name] = mean_ci([c["after"][name] for c in group])
            row[f"pretrained_{name}"] = mean_ci([c["before"][name] for c in group])
        analysed = [c for c in group if "prune" in c]
        if analysed:
            row["k_to_half"] = mean_ci([c["prune"]["k_to_half"] for c in analysed])
            for k in (5, 15, 50):
                if k in analysed[0]["prune"]["ks"]:
                    i = analysed[0]["prune"]["ks"].index(k)
                    row[f"prune_pt_k{k}"] = mean_ci([c["prune"]["acc_pt_cte0"][i] for c in analysed])
                    row[f"prune_ft_k{k}"] = mean_ci([c["prune"]["acc_ft_cte1"][i] for c in analysed])
            for which in ("finetuned", "pretrained", "random_init"):
                row[f"probe_{which}_last"] = mean_ci([_last(c["probe"][which]) for c in analysed])
                row[f"probe_{which}"] = [mean_ci(v) for v in zip(*[c["probe"][which] for c in analysed])]
            for curve in analysed[0]["reft"]:
                row[f"reft_{curve}_steps_to_0.9"] = mean_ci([c["reft"][curve]["steps_to_0.9"] for c in analysed])
                row[f"reft_{curve}_end"] = mean_ci([c["reft"][curve]["end"] for c in analysed])
        rows.append(row)
    return rows
