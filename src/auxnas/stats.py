"""Statistics over seeds: mean ± std, the paired 95 % interval of a difference and of a ratio of means.

No accuracy claim without these: a method is better than a baseline only when the interval of the
per-seed differences (paired by seed) excludes 0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

#: two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)


def t_quantile_975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (normal's 1.96 beyond 30)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        raise ValueError("no values")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def paired_interval(values: Sequence[float], baseline: Sequence[float]) -> dict[str, float | str]:
    """Mean difference ``values - baseline`` (paired by position: the same seed) and its 95 % t interval.

    ``verdict`` is "higher" / "lower" when the interval excludes 0, else "no difference"; NaN bounds
    with fewer than two pairs.
    """
    if len(values) != len(baseline) or not values:
        raise ValueError(f"need equally many paired values, got {len(values)} and {len(baseline)}")
    diffs = [v - b for v, b in zip(values, baseline)]
    mean, std = mean_std(diffs)
    if len(diffs) < 2:
        return {"mean_diff": mean, "low": math.nan, "high": math.nan, "n": 1, "verdict": "no difference"}
    half = t_quantile_975(len(diffs) - 1) * std / math.sqrt(len(diffs))
    low, high = mean - half, mean + half
    verdict = "higher" if low > 0 else "lower" if high < 0 else "no difference"
    return {"mean_diff": mean, "low": low, "high": high, "n": len(diffs), "verdict": verdict}


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, float | bool]:
    """Ratio of the means of two paired samples (position = seed) and its 95 % Fieller interval.

    Fieller: the ratios ``r`` for which ``mean(numerator) - r * mean(denominator)`` is not significantly
    non-zero, with the t quantile of ``n - 1`` degrees of freedom and the pairs' sample covariance. ``bounded``
    is False, and the interval (-inf, inf), when the denominator's mean is not significantly non-zero (the exact
    set is then the whole line or the outside of an interval; (-inf, inf) covers both). Used for the share of
    the floor-to-ceiling gap that a method closes (``auxnas.bench.accuracy``).
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"need equally many paired values, got {len(numerator)} and {len(denominator)}")
    n = len(numerator)
    a, b = statistics.fmean(numerator), statistics.fmean(denominator)
    ratio = a / b if b != 0 else math.nan
    if n < 2:
        return {"ratio": ratio, "low": -math.inf, "high": math.inf, "n": n, "bounded": False}
    t2 = t_quantile_975(n - 1) ** 2
    # variances and covariance of the two means
    v_aa = statistics.variance(numerator) / n
    v_bb = statistics.variance(denominator) / n
    v_ab = statistics.covariance(numerator, denominator) / n
    # (a - r b)^2 <= t^2 (v_aa - 2 r v_ab + r^2 v_bb)  <=>  qa r^2 - 2 qb r + qc <= 0
    qa, qb, qc = b * b - t2 * v_bb, a * b - t2 * v_ab, a * a - t2 * v_aa
    if qa <= 0:
        return {"ratio": ratio, "low": -math.inf, "high": math.inf, "n": n, "bounded": False}
    root = math.sqrt(max(qb * qb - qa * qc, 0.0))  # >= 0 when qa > 0: the ratio itself satisfies the inequality
    return {"ratio": ratio, "low": (qb - root) / qa, "high": (qb + root) / qa, "n": n, "bounded": True}
