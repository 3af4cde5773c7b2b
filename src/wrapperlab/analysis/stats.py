"""Means with 95 % confidence intervals over seeds (Student's t; Welch's for two unpaired samples; no SciPy needed
for small n)."""

from __future__ import annotations

import math
from typing import Sequence

# two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.96


def _mean_var(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and sample variance (n - 1) of at least two values."""
    mean = sum(xs) / len(xs)
    return mean, sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)


def mean_ci(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """``{"mean", "ci95", "n", "missing"}``; ``None`` values (e.g. a threshold never reached) are counted apart."""
    xs = [float(v) for v in values if v is not None]
    out: dict[str, float | int | None] = {"n": len(xs), "missing": len(values) - len(xs), "mean": None, "ci95": None}
    if xs:
        out["mean"] = sum(xs) / len(xs)
        if len(xs) > 1:
            out["ci95"] = t95(len(xs) - 1) * math.sqrt(_mean_var(xs)[1]) / math.sqrt(len(xs))
    return out


def welch_ci(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float | int]:
    """The difference of two means ``mean(xs) - mean(ys)`` with Welch's 95 % half-width (unequal variances,
    Welch-Satterthwaite degrees of freedom rounded down; both variances zero: n_x - 1), for samples whose members are
    not paired; each needs at least two values. ``{"mean", "ci95", "df", "n_x", "n_y"}``."""
    (mx, vx), (my, vy) = _mean_var(xs), _mean_var(ys)
    sx, sy = vx / len(xs), vy / len(ys)
    df = (sx + sy) ** 2 / (sx ** 2 / (len(xs) - 1) + sy ** 2 / (len(ys) - 1)) if sx + sy > 0 else float(len(xs) - 1)
    return {"mean": mx - my, "ci95": t95(max(1, math.floor(df))) * math.sqrt(sx + sy), "df": df, "n_x": len(xs),
            "n_y": len(ys)}
