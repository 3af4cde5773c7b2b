"""What each stage and analysis of the PCFG setting hands on — to its children, the runner and the report — typed.
Each is the JSON its run (``result.json``) or its stored analysis holds, field for field (schema.Result)."""

from __future__ import annotations

from pydantic import Field

from wrapperlab.analysis.probing import ProbeResult
from wrapperlab.analysis.pruning import PruneResult
from wrapperlab.claims.verdicts import PRUNE_K_MAX, best_block, prune_gain
from wrapperlab.runs.stage import Stored
from wrapperlab.schema import Result

#: accuracies by metric: the paper's four (acc_pt_cte0, acc_pt_cte1, acc_ft_cte0, acc_ft_cte1), or for a run trained
#: back on the pretraining question the one it is read by (acc_pt_cte0)
Metrics = dict[str, float]


class PretrainResult(Result):
    """A pretraining (and the never-had-it model, the Scr.+FT pretraining)."""

    accuracy: dict[str, float]  # "task/operand" -> exact-match accuracy
    steps: int
    train_seconds: float
    eval_seconds: float
    resumed_from: int | None
    tokens_per_second: float
    final_loss: float | None
    params: int


class FinetuneResult(Result):
    """A fine-tuning-like run: fine-tuning, randFT, reFT and its baselines (Scr.+FT, Scr.)."""

    before: Metrics
    after: Metrics
    first_step_at: dict[str, dict[str, int | None]]  # metric -> threshold ("0.5", "0.9") -> first evaluated step
    steps: int
    stopped_early: bool
    train_seconds: float
    resumed_from: int | None
    stop_reason: str | None = None  # "threshold" or "plateau" where the stop rule ended it (training/stopping.py)


class ReftCurve(Result):
    """One reverse fine-tuning curve (the reFT, or a baseline trained the same way): Acc O_PT(C_Te = 0) per step."""

    run: str
    start: float
    end: float
    steps_to_half: int | None = Field(alias="steps_to_0.5")
    steps_to_90: int | None = Field(alias="steps_to_0.9")
    budget: int | None = None  # the steps it was allowed (older results: read off the curve)
    lr: float | None = None
    curve: list[tuple[int, float]]

    def crossed(self, threshold: float = 0.9) -> float | None:
        """Steps to ``threshold`` read between evaluation points (:func:`~wrapperlab.claims.verdicts.crossing_step`):
        what the speed rules compare, so seeds do not tie on the evaluation grid."""
        from wrapperlab.claims.verdicts import crossing_step

        return crossing_step(self.curve, threshold)

    def allowed(self) -> int:
        """The steps the curve was allowed."""
        return self.budget or max((step for step, _ in self.curve), default=0)


class ReftCurves(Result):
    """A reFT node: the reFT curve and the never-had-it baselines' beside it."""

    reft: ReftCurve
    scr_ft: ReftCurve | None = Field(None, alias="scr+ft")
    scr: ReftCurve | None = None

    def curves(self) -> dict[str, ReftCurve]:
        """The curves there are, by their names in the report (reft, scr+ft, scr)."""
        return {name: c for name, c in (("reft", self.reft), ("scr+ft", self.scr_ft), ("scr", self.scr))
                if c is not None}


class PruneRecord(Stored, PruneResult):
    """A stored pruning sweep."""

    def gain(self, k_max: int = PRUNE_K_MAX, metric: str = "acc_pt_cte0") -> float:
        """The most the sweep raised ``metric`` over its unpruned value with at most ``k_max`` units."""
        return prune_gain(self.ks, self.curves[metric], k_max)


class ProbeRecord(Stored, ProbeResult):
    """Stored probes per block, beside the random-init twin."""

    def best(self, which: str = "model", target: str | None = None) -> float:
        """The best accuracy over the blocks after the embeddings (B1 ...) for ``target`` (default: O_PT's): what
        the model computed, not what its input embeddings already hold."""
        return best_block(self.accuracy[target or next(iter(self.accuracy))][which])


class JailbreakRecord(Stored):
    """The synthetic jailbreak: count(O_PT) asked through each counting token, fine-tuned and pretrained model."""

    tokens: list[str]
    finetuned: dict[str, dict[str, float]]  # "cte0" / "cte1" -> token -> accuracy
    pretrained: dict[str, dict[str, float]]


#: the typed result of each stage's node
RESULTS: dict[str, type[Result]] = {
    "pretrain": PretrainResult, "baseline": PretrainResult, "finetune": FinetuneResult, "scrft": FinetuneResult,
    "reft": ReftCurves, "prune": PruneRecord, "probe": ProbeRecord, "jailbreak": JailbreakRecord,
}
