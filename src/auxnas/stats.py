"""Statistics over seeds: mean ± std and the paired 95 % interval of a difference.

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
