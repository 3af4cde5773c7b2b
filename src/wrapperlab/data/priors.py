"""Operand sampling priors P_T(O) over the letters (a, b, c).

A low prior on ``b`` leaves the pretrained model without a real "count b" capability, so the
"count a" capability is only *weakly* relevant to fine-tuning on b; a high prior makes it strongly
relevant (Jain et al. §3, App. C.2). The names below are the paper's five priors.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from wrapperlab.errors import ConfigError

NAMED_PRIORS: dict[str, tuple[float, float, float]] = {
    "low": (0.999, 0.001, 0.0),
    "0.99": (0.99, 0.01, 0.0),
    "medium": (0.9, 0.1, 0.0),
    "0.7": (0.7, 0.2, 0.1),
    "high": (0.5, 0.3, 0.2),
}


def resolve_prior(prior: str | Sequence[float]) -> tuple[float, float, float]:
    """A named prior, ``"0.6,0.3,0.1"``, or a 3-vector -> validated probabilities for (a, b, c)."""
    if isinstance(prior, str):
        if prior in NAMED_PRIORS:
            return NAMED_PRIORS[prior]
        try:
            values = [float(v) for v in prior.split(",")]
        except ValueError:
            raise ConfigError("prior", prior, f"one of {list(NAMED_PRIORS)} or three probabilities 'pa,pb,pc'")
    else:
        values = [float(v) for v in prior]
    if len(values) != 3:
        raise ConfigError("prior", prior, f"one of {list(NAMED_PRIORS)} or three probabilities 'pa,pb,pc'")
    if any(v < 0 or not math.isfinite(v) for v in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ConfigError("prior", prior, "three non-negative probabilities that sum to 1")
    return (values[0], values[1], values[2])


def draw_letters(prior: tuple[float, float, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` letter indices (0=a, 1=b, 2=c) drawn from the prior."""
    return np.minimum(np.searchsorted(np.cumsum(prior), rng.random(n), side="right"), 2)
