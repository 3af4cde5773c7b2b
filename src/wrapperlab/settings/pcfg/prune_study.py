"""Which pruning settings revive a wrapped capability? A grid over unit x saliency x pretraining, over seeds.

For each seed and pretraining variant (``annealed``: the profile's full cosine schedule; ``short``: fewer
steps at a constant learning rate after warm-up, like a run stopped early) the model is fine-tuned at one
(lr, C_Tr) cell, then pruned with every variant. Reported per variant: Acc O_PT(C_Te=0) and Acc O_FT(C_Te=1)
at K = 5, 15, 50 (mean and 95 % CI over seeds), the smallest K restoring half the pretrained Acc O_PT, and
where the top-ranked units sit.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from wrapperlab.analysis.pruning import PruneConfig, PruneResult, unit_locations
from wrapperlab.analysis.stats import mean_ci
from wrapperlab.files import atomic_write_text
from wrapperlab.runs.profiles import profile
from wrapperlab.runs.stage import Lab, Say
from wrapperlab.runs.store import RunStore, run_id
from wrapperlab.settings.pcfg.analyses import prune_run
from wrapperlab.settings.pcfg.configs import finetune_config, pcfg_lr, pretrain_config
from wrapperlab.settings.pcfg.stages import finetune, pretrain
from wrapperlab.training.config import Runtime

KS = (0, 1, 2, 3, 5, 10, 15, 20, 30, 50)

#: (name, unit, matrices) — "rows" over every matrix is the paper's unit
UNITS = [
    ("rows: all matrices", "rows", ("attn.qkv", "attn.out", "mlp.fc_in", "mlp.fc_out")),
    ("rows: attention", "rows", ("attn.qkv", "attn.out")),
    ("rows: MLP", "rows", ("mlp.fc_in", "mlp.fc_out")),
    ("MLP hidden units", "mlp_hidden", ("attn.qkv", "attn.out", "mlp.fc_in", "mlp.fc_out")),
    ("single weights", "weights", ("attn.qkv", "attn.out", "mlp.fc_in", "mlp.fc_out")),
]

#: pretraining variants: the profile's schedule, or stopped at 5/8 of its steps with a constant lr after
#: warm-up (never annealed, like the pilot's early-stopped model); quick: 1600 -> 1000 steps
PRETRAININGS = {"annealed": 1.0, "short": 0.625}


def _pretraining_overrides(profile_name: str, fraction: float) -> dict[str, Any]:
    if fraction == 1.0:
        return {}
    iters = profile(profile_name)["pretrain"]["iters"]
    return {"train.iters": max(1, round(iters * fraction)), "train.min_lr_frac": 1.0}


def run_prune_study(
    store: RunStore,
    profile_name: str = "quick",
    seeds: list[int] = (0, 1, 2),
    lr: str | float = "M",
    c_tr: float = 1.0,
    runtime: Runtime = Runtime(),
    say: Say = print,
) -> dict[str, Any]:
    records = []
    for seed in seeds:
        for pt_name, fraction in PRETRAININGS.items():
            overrides = {"seed": seed, **_pretraining_overrides(profile_name, fraction)}
            pt = pretrain(pretrain_config(profile_name, overrides), store, runtime, say)
            ft = finetune(finetune_config(pt.run.id, profile_name, {"train.lr": lr, "data.c_tr": c_tr, "seed": seed}),
                          store, runtime, say)
            for unit_name, unit, matrices in UNITS:
                for saliency in ("signed", "absolute"):
                    cfg = PruneConfig(unit=unit, matrices=matrices, saliency=saliency, ks=KS)
                    data = prune_run(Lab(store, say), ft.run.id, cfg, seed=seed).data
                    records.append({
                        "seed": seed, "pretraining": pt_name, "unit": unit_name, "saliency": saliency,
                        "pretrained_count_a": pt.result["accuracy"].get("count/a"),
                        "after_ft": ft.result["after"], "result": data,
                    })
    rows = aggregate(records)
    summary = {"config": {"profile": profile_name, "seeds": list(seeds), "lr": pcfg_lr(lr), "c_tr": c_tr,
                          "ks": list(KS), "pretrainings": PRETRAININGS},
               "rows": rows, "pretrained": _pretrained(records)}
    path = store.root / "studies" / (run_id("prunestudy", summary["config"]) + ".json")
    atomic_write_text(path, json.dumps(summary, indent=1) + "\n")
    summary["path"] = str(path)
    return summary


def _pretrained(records: list[dict]) -> dict[str, Any]:
    out = {}
    for name in PRETRAININGS:
        group = {r["seed"]: r for r in records if r["pretraining"] == name}.values()
        out[name] = {
            "count_a": mean_ci([r["pretrained_count_a"] for r in group]),
            "acc_pt_cte0_after_ft": mean_ci([r["after_ft"]["acc_pt_cte0"] for r in group]),
        }
    return out


def aggregate(records: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for pt_name in PRETRAININGS:
        for unit_name, _, _ in UNITS:
            for saliency in ("signed", "absolute"):
                group = [r for r in records if (r["pretraining"], r["unit"], r["saliency"]) == (pt_name, unit_name, saliency)]
                if not group:
                    continue
                row: dict[str, Any] = {"pretraining": pt_name, "unit": unit_name, "saliency": saliency}
                for k in (5, 15, 50):
                    i = KS.index(k)
                    row[f"pt_k{k}"] = mean_ci([r["result"]["curves"]["acc_pt_cte0"][i] for r in group])
                    row[f"ft_k{k}"] = mean_ci([r["result"]["curves"]["acc_ft_cte1"][i] for r in group])
                row["k_to_half"] = mean_ci([r["result"]["k_to_half"] for r in group])
                where = Counter()
                for r in group:
                    where.update(unit_locations(PruneResult(**{k: r["result"][k] for k in
                                                               ("config", "ks", "curves", "top_units")}), 15))
                row["top15_where"] = dict(where.most_common(4))
                rows.append(row)
    return rows
