"""When a run stops before its step cap: the rule read at every evaluation, and its state kept in checkpoints.

Two reasons to stop (``TrainConfig.stop_when`` and friends):

* **threshold** — every named metric at or above its threshold at ``stop_holds`` evaluations in a row (reFT and its
  baselines: training on after the capability is back spends compute on a number nobody reads; fine-tuning to
  convergence: ``acc_ft >= 0.99``, held, so one lucky evaluation does not end it);
* **plateau** — with ``stop_plateau = k``, no named metric has beaten its best by ``plateau_delta`` in the last k
  evaluations: the run has converged below the threshold (a fine-tuning that learns count b to 49 % and stays there
  is as converged as one that reaches 99 %, and its steps say so).

The state (evaluations in a row, best values, evaluations since the best) goes into every checkpoint, so a run
killed between two evaluations resumes to the same decision at the same step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

REASONS = ("threshold", "plateau")


@dataclass
class StopRule:
    """The stop rule of one run; :meth:`update` with each evaluation's record says whether (and why) it stops."""

    thresholds: dict[str, float]
    holds_needed: int = 1
    plateau: int = 0
    delta: float = 0.005
    holds: int = 0
    best: dict[str, float] = field(default_factory=dict)
    since_best: int = 0

    @classmethod
    def of(cls, cfg: Any, state: dict[str, Any] | None = None) -> StopRule:
        """The rule ``cfg`` (a TrainConfig) asks for, resumed from a checkpoint's ``state`` where there is one."""
        rule = cls(dict(cfg.stop_when), cfg.stop_holds, cfg.stop_plateau, cfg.plateau_delta)
        if state:
            rule.holds, rule.since_best = int(state["holds"]), int(state["since_best"])
            rule.best = {k: -math.inf if v is None else float(v) for k, v in state["best"].items()}
        return rule

    def update(self, record: dict[str, Any]) -> str | None:
        """Read one evaluation's record: ``"threshold"`` or ``"plateau"`` where the run stops here, else None."""
        if not self.thresholds:
            return None
        values = {k: float(record.get(k, -math.inf)) for k in self.thresholds}
        self.holds = self.holds + 1 if all(values[k] >= v for k, v in self.thresholds.items()) else 0
        if self.holds >= self.holds_needed:
            return "threshold"
        if not self.plateau:
            return None
        if not self.best or any(values[k] >= self.best[k] + self.delta for k in values):
            self.best = {k: max(values[k], self.best.get(k, -math.inf)) for k in values}
            self.since_best = 0
            return None
        self.since_best += 1
        return "plateau" if self.since_best >= self.plateau else None

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the rule, as JSON (a metric no evaluation reported, -inf, is written None)."""
        best = {k: v if math.isfinite(v) else None for k, v in self.best.items()}
        return {"holds": self.holds, "best": best, "since_best": self.since_best}
