"""Intervals and the verdict rule on hand-made numbers (no training, no store)."""

import math

import numpy as np
import pytest
from scipy import stats

from sweeper.report.stats import (
    BINOMIAL,
    NONE,
    T,
    WELCH,
    Interval,
    binomial_se,
    difference_interval,
    linear_fit,
    mean_interval,
    seeds_to_settle,
)
from sweeper.report.verdict import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    classify,
    floors_beaten,
    settle_words,
)


def test_three_seeds_give_a_t_interval_with_two_degrees_of_freedom():
    values = [0.80, 0.82, 0.81]
    interval = mean_interval(values)
    half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert interval.method == T and interval.n == 3
    assert interval.mean == pytest.approx(0.81)
    assert (interval.low, interval.high) == pytest.approx((0.81 - half, 0.81 + half))
    assert half == pytest.approx(0.0248, abs=1e-4)  # 4.30 * 0.01 / sqrt(3)


def test_one_seed_falls_back_to_the_binomial_standard_error_of_the_test_accuracy():
    interval = mean_interval([0.755], test_size=2000)
    se = math.sqrt(0.755 * 0.245 / 2000)
    assert interval.method == BINOMIAL and interval.n == 1
    assert interval.half_width == pytest.approx(1.959964 * se)
    assert 100 * se == pytest.approx(0.96, abs=0.01)  # the "about +-1 point" with 2,000 images
    unknown = mean_interval([0.755])
    assert unknown.method == NONE and not unknown.known
    assert math.isnan(binomial_se(0.5, float("nan")))


def test_same_seed_differences_are_paired():
    full = {0: 0.80, 1: 0.85, 2: 0.90}  # big seed-to-seed spread ...
    scaled = {0: 0.77, 1: 0.82, 2: 0.87}  # ... but every seed loses exactly 3 points
    diff = difference_interval(scaled, full)
    assert diff.method == T and diff.n == 3
    assert diff.mean == pytest.approx(-0.03)
    assert diff.half_width == pytest.approx(0.0, abs=1e-12)
    assert classify(diff) == FAILS
    # unpaired (different seeds on each side): Welch, and the seed spread makes it inconclusive
    welch = difference_interval({3: 0.77, 4: 0.82, 5: 0.87}, full)
    assert welch.method == WELCH and welch.mean == pytest.approx(-0.03)
    assert welch.low < -0.01 < welch.high
    assert classify(welch) == INCONCLUSIVE


def test_one_seed_each_combines_both_binomial_errors():
    diff = difference_interval({0: 0.80}, {0: 0.81}, test_size=2000)
    se = math.sqrt(0.8 * 0.2 / 2000 + 0.81 * 0.19 / 2000)
    assert diff.method == BINOMIAL
    assert diff.half_width == pytest.approx(1.959964 * se)
    assert classify(diff) == INCONCLUSIVE  # -1.0 +- 2.4 points straddles -1


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (-0.009, 0.02, HOLDS),  # a loss of more than a point is excluded
        (-0.010, 0.00, HOLDS),  # exactly -1 point at the edge still holds
        (0.01, 0.03, HOLDS),  # better than full size
        (-0.05, -0.011, FAILS),  # a loss of more than a point is all that is plausible
        (-0.02, 0.005, INCONCLUSIVE),
        (float("nan"), float("nan"), INCONCLUSIVE),
    ],
)
def test_the_verdict_rule(low, high, verdict):
    mean = (low + high) / 2 if math.isfinite(low) else -0.005
    assert classify(Interval(mean, low, high, 3, T, 0.01, 2)) == verdict


def test_floors_gate_on_the_lower_end_of_the_interval():
    acc = Interval(0.80, 0.79, 0.81, 3, T, 0.004, 2)
    assert floors_beaten(acc, {"knn_pixels_top1": 0.785, "knn_random_top1": 0.70}) == (True, None)
    assert floors_beaten(acc, {"knn_pixels_top1": 0.795, "knn_random_top1": 0.70}) == (False, "knn_pixels_top1")
    assert floors_beaten(acc, {"knn_pixels_top1": 0.70, "knn_random_top1": 0.80}) == (False, "knn_random_top1")
    assert floors_beaten(acc, {"knn_pixels_top1": float("nan")}) == (True, None)  # older store: no gate


def test_seeds_to_settle_grows_as_the_mean_nears_the_threshold():
    far = Interval(-0.005, -0.02, 0.01, 2, T, 0.0012, 1)  # t(1) makes the interval wide
    near = Interval(-0.009, -0.02, 0.002, 2, T, 0.0012, 1)
    assert seeds_to_settle(far, -0.01) == 1
    assert seeds_to_settle(near, -0.01) > seeds_to_settle(far, -0.01)
    on_it = Interval(-0.01, -0.02, 0.0, 2, T, 0.0012, 1)
    assert seeds_to_settle(on_it, -0.01) is None
    assert "many more seeds" in settle_words(on_it)
    assert settle_words(far) == "about 1 more seed per arm would likely settle it"


def test_linear_fit_recovers_a_slope_and_its_interval():
    rng = np.random.default_rng(0)
    x = np.repeat(np.log2([0.25, 0.5, 1.0]), 8)
    y = 0.85 + 0.03 * x + rng.normal(0, 0.002, x.size)
    fit = linear_fit(x[:, None], y, ["width"])
    per_halving = fit.interval("width", -1.0)
    assert per_halving.mean == pytest.approx(-0.03, abs=0.002)
    assert per_halving.low < -0.03 < per_halving.high
    assert linear_fit(x[:3, None], y[:3], ["width"]) is None  # one residual degree of freedom is too few
