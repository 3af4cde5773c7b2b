"""What each stage and analysis of the Tracr setting hands on, typed: the JSON its run or stored analysis holds,
field for field (schema.Result)."""

from __future__ import annotations

from typing import Any

from wrapperlab.runs.stage import Stored
from wrapperlab.schema import Result


class CompileResult(Result):
    """A compiled program converted to our GPT."""

    program: str
    d_model: int
    n_layers: int
    d_mlp: int
    head_dim: int
    params: int
    output_values: list[Any] | None
    residual_labels: int


class TunedResult(Result):
    """A fine-tuning of a compiled model, a reFT, or a baseline (Scr.+FT, Scr.). ``before`` / ``after``: accuracies,
    floors and shortcut shares per test set (``after`` also per value: ``by_value_*``)."""

    before: dict[str, float]
    after: dict[str, float | dict[str, list[int | float]]]  # by_value_*: per value, (accuracy, count)
    first_step_at: dict[str, dict[str, int | None]]
    steps: int
    train_seconds: float
    resumed_from: int | None
    final_loss: float | None

    def steps_to(self, metric: str = "acc_pt_cte0", threshold: str = "0.9") -> int | None:
        return self.first_step_at.get(metric, {}).get(threshold)


class AttentionRecord(Stored):
    """Attention mass on each token per block before (the noised compiled model) and after fine-tuning, and how far
    each block's attention moved."""

    n: int
    before: list[dict[str, float]]
    after: list[dict[str, float]]
    change: list[float] | None = None


class WeightSearchRecord(Stored):
    """Exhaustive single-weight pruning: the best single weights, the first-order pick, greedy sets."""

    baseline: dict[str, float]
    floor_pt_cte0: float
    histogram_before: dict[str, int]
    candidates: int
    min_abs: float
    best: list[dict[str, Any]]
    first_order: dict[str, Any] | None
    greedy: list[dict[str, Any]]
    gain: float


RESULTS: dict[str, type[Result]] = {
    "compile": CompileResult, "finetune": TunedResult, "scrft": TunedResult, "scratch": TunedResult,
    "reft": TunedResult, "attention": AttentionRecord, "prune": WeightSearchRecord,
}
