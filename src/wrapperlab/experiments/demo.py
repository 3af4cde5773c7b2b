"""The quick reproduction: pretrain once, fine-tune over a (learning rate x C_Tr) grid, tabulate.

This is what ``make demo`` runs. It shows the paper's first signature — with a spurious correlation
(C_Tr = 1) the fine-tuned model answers the fine-tuning question on correlated data while its
pretraining answer (Acc O_PT) collapses — next to the C_Tr = 0 control.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wrapperlab.experiments.configs import finetune_config, parse_lr, pretrain_config, profile
from wrapperlab.experiments.pipeline import Say, StageResult, finetune, pretrain
from wrapperlab.experiments.store import RunStore
from wrapperlab.training.config import Runtime


@dataclass
class DemoResult:
    pretrained: StageResult
    finetuned: list[tuple[float, float, StageResult]]  # (lr, c_tr, stage)

    def rows(self) -> list[dict[str, Any]]:
        before = self.finetuned[0][2].result["before"] if self.finetuned else {}
        rows = [{"model": "pretrained", "lr": None, "c_tr": None, **before}]
        for lr, c_tr, stage in self.finetuned:
            rows.append({"model": stage.run.id, "lr": lr, "c_tr": c_tr, **stage.result["after"]})
        return rows


def run_demo(
    profile_name: str = "quick",
    store: RunStore | None = None,
    runtime: Runtime = Runtime(),
    seed: int = 0,
    say: Say = print,
) -> DemoResult:
    store = store or RunStore("runs")
    grid = profile(profile_name)["demo"]
    pt = pretrain(pretrain_config(profile_name, {"seed": seed}), store, runtime, say)
    acc = pt.result["accuracy"]
    say(
        "pretrained: " + ", ".join(f"{k} {100 * acc[k]:.1f}%" for k in ("count/a", "count/b", "count/c") if k in acc)
        + f" ({pt.result['steps']} steps, {pt.result['train_seconds']:.0f} s)"
    )
    finetuned = []
    for lr_name in grid["lrs"]:
        for c_tr in grid["c_tr"]:
            lr = parse_lr(lr_name)
            cfg = finetune_config(pt.run.id, profile_name, {"train.lr": lr, "data.c_tr": c_tr, "seed": seed})
            finetuned.append((lr, c_tr, finetune(cfg, store, runtime, say)))
    return DemoResult(pt, finetuned)
