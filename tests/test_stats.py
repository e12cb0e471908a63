"""Seed statistics: mean ± std, the paired interval of a difference and Fieller's of a ratio."""

import math

import pytest

from auxnas.stats import mean_std, paired_interval, ratio_interval, t_quantile_975


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


def test_ratio_interval_with_an_exact_denominator_is_the_numerators_t_interval_scaled():
    # denominator 4 on every seed: no variance, so the bounds are (mean a ± t sd(a) / sqrt(n)) / 4
    out = ratio_interval([1.0, 2.0, 3.0], [4.0, 4.0, 4.0])
    half = 4.303 / math.sqrt(3) / 4
    assert out["ratio"] == 0.5 and out["bounded"] and out["n"] == 3
    assert out["low"] == pytest.approx(0.5 - half) and out["high"] == pytest.approx(0.5 + half)


@pytest.mark.parametrize(("numerator", "denominator", "a", "b"), [
    ([1.0, 2.0, 3.0], [3.0, 4.0, 5.0], 2.0, 4.0),  # interval spans 0
    ([2.0, 3.0, 4.0], [4.0, 5.0, 6.0], 3.0, 5.0),  # interval above 0
])
def test_ratio_interval_by_hand_with_correlated_pairs(numerator, denominator, a, b):
    # both samples have variance 1 and covariance 1, so each mean's (co)variance is 1/3; with k = t^2 / 3 the
    # Fieller quadratic (b^2 - k) r^2 - 2 (a b - k) r + (a^2 - k) <= 0 has discriminant (a b - k)^2 - (b^2 - k)
    # (a^2 - k) = k (a - b)^2 = 4 k, so r = (a b - k -+ 2 sqrt(k)) / (b^2 - k)
    k = 4.303**2 / 3
    out = ratio_interval(numerator, denominator)
    assert out["ratio"] == pytest.approx(a / b) and out["bounded"]
    assert out["low"] == pytest.approx((a * b - k - 2 * math.sqrt(k)) / (b * b - k))
    assert out["high"] == pytest.approx((a * b - k + 2 * math.sqrt(k)) / (b * b - k))
    assert out["low"] < out["ratio"] < out["high"]


def test_ratio_interval_is_unbounded_when_the_denominator_is_not_significant():
    # denominator mean 2/3, variance 7/3: t^2 * 7/9 = 14.4 > (2/3)^2, so no finite interval exists
    out = ratio_interval([1.0, 2.0, 3.0], [1.0, -1.0, 2.0])
    assert out["ratio"] == pytest.approx(3.0)
    assert not out["bounded"] and out["low"] == -math.inf and out["high"] == math.inf
    single = ratio_interval([1.0], [2.0])
    assert single["ratio"] == 0.5 and not single["bounded"]
    assert math.isnan(ratio_interval([1.0, 2.0], [1.0, -1.0])["ratio"])
    with pytest.raises(ValueError):
        ratio_interval([1.0, 2.0], [1.0])
