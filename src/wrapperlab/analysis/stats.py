"""Means with 95 % confidence intervals over seeds (Student's t; no SciPy needed for small n)."""

from __future__ import annotations

import math
from typing import Sequence

# two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.96


def mean_ci(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """``{"mean", "ci95", "n", "missing"}``; ``None`` values (e.g. a threshold never reached) are counted apart."""
    xs = [float(v) for v in values if v is not None]
    out: dict[str, float | int | None] = {"n": len(xs), "missing": len(values) - len(xs), "mean": None, "ci95": None}
    if xs:
        mean = sum(xs) / len(xs)
        out["mean"] = mean
        if len(xs) > 1:
            sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
            out["ci95"] = t95(len(xs) - 1) * sd / math.sqrt(len(xs))
    return out
