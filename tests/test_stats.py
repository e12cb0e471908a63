"""Seed statistics: mean ± std and the paired interval."""

import math

import pytest

from auxnas.stats import mean_std, paired_interval, t_quantile_975


def test_mean_std_and_t_quantiles():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)
    assert t_quantile_975(2) == 4.303 and t_quantile_975(100) == 1.96
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_paired_interval_by_hand():
    # differences 1, 2, 3: mean 2, std 1, half-width 4.303 / sqrt(3)
    out = paired_interval([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    half = 4.303 / math.sqrt(3)
    assert out["mean_diff"] == 2.0 and out["low"] == pytest.approx(2 - half) and out["high"] == pytest.approx(2 + half)
    assert out["verdict"] == "no difference"  # 2 - 2.48 < 0
    assert paired_interval([12.0, 12.1, 11.9], [10.0, 10.0, 10.0])["verdict"] == "higher"
    assert paired_interval([8.0, 8.1, 7.9], [10.0, 10.0, 10.0])["verdict"] == "lower"
    # pairing matters: a shared seed effect cancels
    assert paired_interval([20.0, 30.0, 40.0], [19.0, 29.1, 38.9])["verdict"] == "higher"
    with pytest.raises(ValueError):
        paired_interval([1.0], [1.0, 2.0])
