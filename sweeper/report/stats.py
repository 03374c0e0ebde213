"""Intervals the report states: means over seeds, differences between two arms, seeds to settle.

Pure functions over numbers. Accuracies are fractions in [0, 1]. With two or more seeds an
interval is Student's t over the seeds; with one seed the only noise that can be estimated is
the test set's, so the interval is the binomial standard error of the test accuracy (which
leaves seed-to-seed variation out, and the report says so).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
MAX_SEEDS_SUGGESTED = 50  # past this many more seeds, "many more" is the honest answer

T = "t"  # Student's t over seeds (or over same-seed pair differences)
WELCH = "welch"  # two arms with different seeds: Welch's t
BINOMIAL = "binomial"  # one seed: binomial standard error of the test accuracy
NONE = "none"  # nothing to estimate the noise from


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided interval; ``se`` is the standard error of the mean, ``df``
    its degrees of freedom (inf for the normal approximation)."""

    mean: float
    low: float
    high: float
    n: int  # seeds (or same-seed pairs) behind the mean
    method: str
    se: float = float("nan")
    df: float = float("inf")

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def known(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def _critical(df: float, confidence: float = CONFIDENCE) -> float:
    q = 0.5 + confidence / 2
    return float(stats.norm.ppf(q)) if not math.isfinite(df) else float(stats.t.ppf(q, df))


def _interval(mean: float, se: float, n: int, method: str, df: float) -> Interval:
    if not (math.isfinite(mean) and math.isfinite(se)):
        return Interval(mean, float("nan"), float("nan"), n, NONE)
    half = _critical(df) * se
    return Interval(mean, mean - half, mean + half, n, method, se, df)


def binomial_se(accuracy: float, test_size: float) -> float:
    """Standard error of an accuracy measured on ``test_size`` images (NaN if unknown)."""
    if not (math.isfinite(accuracy) and math.isfinite(test_size) and test_size > 0):
        return float("nan")
    p = min(max(accuracy, 0.0), 1.0)
    return math.sqrt(p * (1 - p) / test_size)


def _finite(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def mean_interval(values: Sequence[float], test_size: float = float("nan")) -> Interval:
    """Mean over seeds with its 95% interval: t over two or more seeds, binomial with one."""
    v = _finite(values)
    if v.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, NONE)
    mean = float(v.mean())
    if v.size == 1:
        return _accuracy_range(_interval(mean, binomial_se(mean, test_size), 1, BINOMIAL, float("inf")))
    return _accuracy_range(_interval(mean, float(v.std(ddof=1) / math.sqrt(v.size)), int(v.size), T, v.size - 1))


def _accuracy_range(interval: Interval) -> Interval:
    """An accuracy's interval clipped to [0, 1]: two seeds at 85% and 91% gave 70.3-105.7%."""
    if not interval.known:
        return interval
    return dataclasses.replace(interval, low=max(0.0, interval.low), high=min(1.0, interval.high))


def difference_interval(
    scaled: Mapping[int, float], full: Mapping[int, float], test_size: float = float("nan")
) -> Interval:
    """Interval of mean(scaled) - mean(full); the arms map seed -> accuracy.

    Two or more shared seeds: t over the same-seed differences (seed noise cancels in
    part). Otherwise Welch's t when both arms have two or more seeds, else the normal
    approximation with each one-seed arm's binomial standard error.
    """
    a = {s: float(x) for s, x in scaled.items() if x is not None and math.isfinite(float(x))}
    b = {s: float(x) for s, x in full.items() if x is not None and math.isfinite(float(x))}
    if not a or not b:
        return Interval(float("nan"), float("nan"), float("nan"), 0, NONE)
    shared = sorted(set(a) & set(b))
    if len(shared) >= 2:
        d = np.array([a[s] - b[s] for s in shared])
        return _interval(float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), d.size, T, d.size - 1)
    arm_a, arm_b = mean_interval(list(a.values()), test_size), mean_interval(list(b.values()), test_size)
    mean = arm_a.mean - arm_b.mean
    if arm_a.method == T and arm_b.method == T:
        va, vb = arm_a.se**2, arm_b.se**2
        df = (va + vb) ** 2 / (va**2 / (arm_a.n - 1) + vb**2 / (arm_b.n - 1)) if va + vb > 0 else float("inf")
        return _interval(mean, math.sqrt(va + vb), min(arm_a.n, arm_b.n), WELCH, df)
    method = BINOMIAL if BINOMIAL in (arm_a.method, arm_b.method) else NONE
    return _interval(mean, math.sqrt(arm_a.se**2 + arm_b.se**2), min(arm_a.n, arm_b.n), method, float("inf"))


def seeds_to_settle(diff: Interval, threshold: float) -> int | None:
    """About how many more seeds would put ``threshold`` outside the interval of ``diff``.

    Assumes the mean stays where it is and the per-seed spread is what was seen (with one
    seed: the binomial standard error, a lower bound). None when no count up to
    ``MAX_SEEDS_SUGGESTED`` would do (the mean sits on the threshold) or nothing is known.
    """
    if not (diff.known and math.isfinite(diff.se)) or diff.se <= 0:
        return None
    distance = abs(diff.mean - threshold)
    n_now = max(diff.n, 1)
    spread = diff.se * math.sqrt(n_now)  # per-seed standard deviation
    for n in range(max(n_now + 1, 2), n_now + MAX_SEEDS_SUGGESTED + 1):
        if _critical(n - 1) * spread / math.sqrt(n) < distance:
            return n - n_now
    return None


@dataclass(frozen=True)
class LinearFit:
    """Least squares y ~ X b: coefficients, their standard errors and degrees of freedom."""

    names: tuple[str, ...]
    coef: np.ndarray
    se: np.ndarray
    cov: np.ndarray
    df: int
    n: int

    def interval(self, name: str, scale: float = 1.0) -> Interval:
        """Interval of ``scale * coef[name]`` (a change of ``scale`` in that regressor)."""
        i = self.names.index(name)
        mean, se = scale * float(self.coef[i]), abs(scale) * float(self.se[i])
        return _interval(mean, se, self.n, T, self.df)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fitted values at the rows of ``X`` (no intercept column) and their interval half-widths."""
        design = np.column_stack([np.ones(len(X)), np.asarray(X, dtype=float)])
        se = np.sqrt(np.einsum("ij,jk,ik->i", design, self.cov, design))
        return design @ self.coef, _critical(self.df) * se


def linear_fit(X: np.ndarray, y: np.ndarray, names: Sequence[str]) -> LinearFit | None:
    """Ordinary least squares with an intercept column added; None when it cannot be fitted
    with at least two residual degrees of freedom."""
    X = np.column_stack([np.ones(len(y)), np.asarray(X, dtype=float)])
    y = np.asarray(y, dtype=float)
    n, p = X.shape
    if n - p < 2 or np.linalg.matrix_rank(X) < p:
        return None
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    residual = y - X @ coef
    sigma2 = float(residual @ residual) / (n - p)
    cov = sigma2 * np.linalg.inv(X.T @ X)
    return LinearFit(("intercept", *names), coef, np.sqrt(np.diag(cov)), cov, n - p, n)
