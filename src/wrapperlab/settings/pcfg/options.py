"""What a PCFG spec may ask of its analyses (``analyses:`` entries), typed: each entry's defaults live here and
nowhere else (the nodes pass an unset value through)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from wrapperlab.settings.reft_options import ReftOptions
from wrapperlab.settings.spec import AnalysisOptions

__all__ = ["JailbreakOptions", "ProbeOptions", "PruneOptions", "ReftOptions", "ANALYSES"]


class PruneOptions(AnalysisOptions):
    """Gradient x weight pruning of every analysed model (and of its never-had-it control)."""

    ks: tuple[Annotated[int, Field(ge=0)], ...] = Field(
        (0, 1, 2, 3, 5, 10, 15, 20, 50), min_length=1,
        description="numbers of units pruned (the verdict reads K <= 15; the curve goes further)")
    n_eval: int = Field(1000, gt=0, description="test samples per accuracy")


class ProbeOptions(AnalysisOptions):
    """Linear probes per block, beside a random-init twin."""

    iters: int | None = Field(None, gt=0, description="training steps (default: the profile's probe.iters)")


class JailbreakOptions(AnalysisOptions):
    """The synthetic jailbreak tokens (App. E.2)."""

    n_eval: int = Field(1000, gt=0, description="test samples per accuracy")


ANALYSES = {"prune": PruneOptions, "probe": ProbeOptions, "reft": ReftOptions, "jailbreak": JailbreakOptions}
