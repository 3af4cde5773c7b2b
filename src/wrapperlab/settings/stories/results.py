"""What each stage and analysis of the stories setting hands on, typed: the JSON its run or stored analysis holds,
field for field (schema.Result)."""

from __future__ import annotations

from typing import Any

from wrapperlab.runs.stage import Stored
from wrapperlab.schema import Result


class StoryMeasures(Result):
    """A story model measured: loss on held-out Twist stories, judged Twist rate of generations that request a Twist
    and of those that do not, and how many were generated."""

    twist_loss: float | None
    gen_twist: float | None = None
    gen_non: float | None = None
    n_gen: int | None = None


class StoryRunResult(Result):
    """A story pretraining, control, deletion or reFT."""

    model: dict[str, Any]
    params: int
    records: int
    tokens: int
    before: StoryMeasures | None
    after: StoryMeasures
    steps: int
    measure_key: dict[str, Any]
    judge_accuracy: dict[str, float] | None
    train_seconds: float
    tokens_per_second: float
    resumed_from: int | None


class StoryProbeRecord(Stored):
    """Probes per design, target and layer, beside the random-init twin."""

    layers: list[str]
    accuracy: dict[str, dict[str, dict[str, list[float]]]]  # design -> target -> model / random_init -> per layer
    majority: dict[str, dict[str, float]]
    n: dict[str, int]


RESULTS: dict[str, type[Result]] = {
    "pretrain": StoryRunResult, "control": StoryRunResult, "finetune": StoryRunResult, "reft": StoryRunResult,
    "probe": StoryProbeRecord,
}
