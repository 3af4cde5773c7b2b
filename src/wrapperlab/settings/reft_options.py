"""What the settings that reverse fine-tune at named learning rates share (PCFG, Tracr): the reFT analysis's
options and a reFT node per reFT lr."""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import Field

from wrapperlab.settings.graph import Node, node_key
from wrapperlab.settings.spec import AnalysisOptions


class ReftOptions(AnalysisOptions):
    """reFT where ``when`` selects, at ``lrs``, with the never-had-it ``baselines`` beside it."""

    baselines: bool | list[Literal["scr+ft", "scr"]] = Field(
        False, description="also the baselines (true: Scr.+FT and Scr.; or a list of them)")
    lrs: list[str | float] | None = Field(
        None, description="reFT (and baseline) learning rates, names or numbers; each fine-tuning gets those not above "
        "its own lr (the paper's reFT lr is below the fine-tuning one). Default: the profile's reft_lr_factor x the "
        "fine-tuning lr")

    def wants(self, baseline: str) -> bool:
        """Whether the baseline ``baseline`` (scr+ft, scr) is asked for."""
        return self.baselines is True or baseline in (self.baselines or [])


def per_reft_lr(nodes: list[Node], lr_value: Callable[[Any], float]) -> list[Node]:
    """A reFT node whose options name ``lrs`` becomes one node per reFT lr not above its fine-tuning lr (point
    ``reft_lr``; ``lr_value`` turns a setting's lr names into numbers); a fine-tuning below every listed lr gets
    none (the paper never reverse fine-tunes faster than it fine-tuned)."""
    out: list[Node] = []
    for node in nodes:
        lrs = node.options.lrs if node.stage == "reft" else None
        if not lrs:
            out.append(node)
            continue
        for lr in lrs:
            if lr_value(lr) <= lr_value(node.point["lr"]) * (1 + 1e-9):
                point = {**node.point, "reft_lr": lr}
                out.append(Node(node_key("reft", point), "reft", point, node.parents, node.options))
    return out
