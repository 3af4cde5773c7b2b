"""The Tracr Counter study: does fine-tuning a compiled counter learn count(b), or wrap count(a)?

Over seeds: the compiled Counter's accuracy under weight noise of several scales; fine-tuning at each
(lr, C_Tr) with Acc O_PT / O_FT at C_Te = 0 / 1, the constant-output floor and the "count(a) + q"
shortcut rate; attention mass of the counting block (block 1) on ``a`` / ``b`` / BOS before and after;
exhaustive single-weight pruning of the C_Tr = 1 models; reFT curves from the C_Tr = 1 models of the
chosen lrs. Everything is a cached run or analysis, so a re-run only computes what is missing.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.experiments.pipeline import Say
from wrapperlab.experiments.store import RunStore, run_id
from wrapperlab.experiments.tracr_runs import (
    attention_run, compile_config, compile_stage, noise_sweep, tracr_finetune, tracr_finetune_config,
    tracr_reft_config, weight_search_run,
)
from wrapperlab.training.checkpoint import atomic_write_text
from wrapperlab.training.config import Runtime

COUNTING_BLOCK = 1  # the Counter's selector-width head (block 0's attention is empty when compiled)


def run_tracr_study(
    store: RunStore,
    profile_name: str = "quick",
    seeds: Sequence[int] = (0, 1, 2),
    lrs: Sequence[str] = ("S", "M", "L"),
    c_trs: Sequence[float] = (0.0, 1.0),
    prune_lrs: Sequence[str] = ("S", "M"),
    reft_from: Sequence[str] = ("M", "L"),
    reft_lr: str = "S",
    runtime: Runtime = Runtime(),
    say: Say = print,
) -> dict[str, Any]:
    compiled = compile_stage(compile_config("counter"), store, say=say)
    base = tracr_finetune_config(compiled.run, profile_name)
    cells = []
    for seed in seeds:
        for lr in lrs:
            for c in c_trs:
                cfg = tracr_finetune_config(compiled.run, profile_name, {"train.lr": lr, "data.c_tr": c, "seed": seed})
                ft = tracr_finetune(cfg, store, runtime, say=say)
                cell: dict[str, Any] = {
                    "seed": seed, "lr": lr, "c_tr": c, "run": ft.run.id,
                    "before": ft.result["before"], "after": ft.result["after"],
                    "attention": attention_run(store, ft.run.id, seed=seed).data,
                }
                if c == 1.0 and lr in prune_lrs:
                    cell["weight_search"] = weight_search_run(store, ft.run.id, seed=seed, say=say).data
                if c == 1.0 and lr in reft_from:
                    reft_cfg = tracr_reft_config(ft.run, profile_name, reft_lr)
                    cell["reft"] = _curve(tracr_finetune(reft_cfg, store, runtime, say=say, kind="tracr-reft"), reft_lr)
                    if lr == reft_from[0]:  # the never-had-it control, once per seed: random weights, same training
                        cell["scratch"] = _curve(tracr_finetune(reft_cfg, store, runtime, say=say, kind="tracr-scratch"),
                                                 reft_lr)
                cells.append(cell)
    summary = {
        "config": {"profile": profile_name, "seeds": list(seeds), "lrs": list(lrs), "c_trs": list(c_trs),
                   "prune_lrs": list(prune_lrs), "reft_from": list(reft_from), "reft_lr": reft_lr,
                   "compiled": compiled.run.id},
        "noise": noise_sweep(compiled.run, base.data, seeds=tuple(seeds)),
        "cells": cells,
        "aggregate": aggregate(cells),
    }
    path = store.root / "studies" / (run_id("tracr-study", summary["config"]) + ".json")
    atomic_write_text(path, json.dumps(summary, indent=1) + "\n")
    summary["path"] = str(path)
    return summary


def _curve(stage, lr: str) -> dict[str, Any]:
    return {
        "run": stage.run.id, "lr": lr,
        "curve": [[m["step"], m["acc_pt_cte0"]] for m in stage.run.metrics() if "acc_pt_cte0" in m],
        "first_step_at": stage.result["first_step_at"].get("acc_pt_cte0", {}),
        "end": stage.result["after"]["acc_pt_cte0"],
    }


def aggregate(cells: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for lr, c in dict.fromkeys((x["lr"], x["c_tr"]) for x in cells):
        group = [x for x in cells if (x["lr"], x["c_tr"]) == (lr, c)]
        row: dict[str, Any] = {"lr": lr, "c_tr": c, "seeds": [x["seed"] for x in group]}
        for key in ("acc_pt_cte0", "acc_pt_cte1", "acc_ft_cte0", "acc_ft_cte1", "shortcut_cte0", "floor_pt_cte0"):
            row[key] = mean_ci([x["after"][key] for x in group])
        for when in ("before", "after"):
            for token, mass in group[0]["attention"][when][COUNTING_BLOCK].items():
                row[f"attn_{when}_{token}"] = mean_ci([x["attention"][when][COUNTING_BLOCK][token] for x in group])
        searched = [x["weight_search"] for x in group if "weight_search" in x]
        if searched:
            row["prune_gain"] = mean_ci([s["gain"] for s in searched])
            row["prune_best_acc"] = mean_ci([s["best"][0]["acc_pt_cte0"] for s in searched])
            row["prune_best"] = [s["best"][0]["name"] for s in searched]
            row["prune_floor"] = mean_ci([s["floor_pt_cte0"] for s in searched])
        refts = [x["reft"] for x in group if "reft" in x]
        if refts:
            row["reft_steps_to_0.9"] = [r["first_step_at"].get("0.9") for r in refts]
            row["reft_end"] = mean_ci([r["end"] for r in refts])
        scratch = [x["scratch"] for x in group if "scratch" in x]
        if scratch:
            row["scratch_steps_to_0.9"] = [r["first_step_at"].get("0.9") for r in scratch]
            row["scratch_end"] = mean_ci([r["end"] for r in scratch])
        rows.append(row)
    return rows
