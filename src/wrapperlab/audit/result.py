"""What an audit produces, typed (``schema.Result``): every number of ``audit.json``, per seed, and the verdicts.
Audits written before the native pipeline read back too (the fields they lack are optional)."""

from __future__ import annotations

from typing import Any

from wrapperlab.schema import Result


class Measured(Result):
    """A model on the held-out records: mean answer log-prob (nats per token) and exact match."""

    logprob: float
    accuracy: float


class CurvePoint(Result):
    step: int
    logprob: float
    accuracy: float


class PrunePoint(Result):
    k: int
    logprob: float
    accuracy: float


class SeedRow(Result):
    """One seed: its split, behaviour, relearning runs (and the step each reached the revival level), the probe per
    layer and model, the pruning curves and their best gain as a share of each model's removal gap."""

    seed: int
    n_attack: int
    n_held_out: int
    base: Measured
    finetuned: Measured
    gap: float
    target: float
    relearn_real: list[CurvePoint]
    relearn_never_known: list[CurvePoint]
    steps_real: int | None
    steps_never_known: int | None
    control: Measured | None = None
    relearn_control: list[CurvePoint] | None = None
    steps_control: int | None = None
    diverged: dict[str, int] = {}  # relearning run -> the step its loss or gradient stopped being finite
    probe: dict[str, list[float]] | None = None
    prune_real: list[PrunePoint] | None = None
    prune_never_known: list[PrunePoint] | None = None
    prune_control: list[PrunePoint] | None = None
    prune_share_real: float | None = None
    prune_share_never_known: float | None = None
    prune_share_control: float | None = None

    def prune_share(self, which: str) -> float | None:
        """The best pruning gain of run ``which`` (real, never_known, control) as a share of its removal gap."""
        return getattr(self, f"prune_share_{which}")


class VerdictRecord(Result):
    claim: str
    outcome: str
    reason: str
    numbers: dict[str, Any] = {}


class AuditResult(Result):
    """An audit: the models and capability it read, how it ran, every seed's numbers, where the fine-tune wrote, the
    rules' verdicts (``decisive``: the relearning rule that decides) and the verdict."""

    base: str
    finetuned: str
    control: str | None
    capability: str
    n_records: int
    model: dict[str, Any]  # model_type, n_layers, d_model, dtype, device (audits of our GPT: its config)
    params: int
    config: dict[str, Any]
    seeds: list[SeedRow]
    weight_diff: list[dict[str, Any]]
    verdicts: dict[str, VerdictRecord]
    signatures: dict[str, VerdictRecord] = {}
    decisive: str
    verdict: VerdictRecord
    seconds: float
    answered: dict[str, float] | None = None  # BASE on the true vs the shuffled answers (the capability gate)
    multiple_choice: bool = False  # records of a question and choices, scored by the right letter
