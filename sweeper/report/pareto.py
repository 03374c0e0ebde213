"""Pareto (non-dominated) sets over any number of max/min objectives.

A row dominates another when it is at least as good in every objective and strictly
better in one. Rows with a missing (NaN) objective are never in the set. Exact
duplicates do not dominate each other, so tied points are all kept.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

_DIRECTIONS = {"max": 1.0, "maximize": 1.0, "min": -1.0, "minimize": -1.0}

# Rows compared at once by the general (k > 2) path: bounds memory to about
# _CHUNK * n * k booleans.
_CHUNK = 512


def objective_signs(objectives: Mapping[str, str]) -> dict[str, float]:
    """Map each objective to +1 (maximise) or -1 (minimise); reject anything else."""
    if not objectives:
        raise ValueError("at least one objective is needed")
    signs = {}
    for name, direction in objectives.items():
        key = str(direction).strip().lower()
        if key not in _DIRECTIONS:
            raise ValueError(f"objective {name!r}: direction must be max or min, not {direction!r}")
        signs[name] = _DIRECTIONS[key]
    return signs


def pareto_mask(df: pd.DataFrame, objectives: Mapping[str, str]) -> pd.Series:
    """Boolean Series (index of ``df``): True for rows no other row dominates.

    ``objectives`` maps column name to ``"max"`` or ``"min"``. O(n log n) for one or
    two objectives; a chunked vectorised O(n^2 k) comparison for more.
    """
    signs = objective_signs(objectives)
    missing = [c for c in signs if c not in df.columns]
    if missing:
        raise KeyError(f"objective columns not in the table: {missing}")
    values = np.column_stack(
        [pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) * s for c, s in signs.items()]
    ) if len(df) else np.empty((0, len(signs)))
    valid = np.isfinite(values).all(axis=1)
    mask = np.zeros(len(df), dtype=bool)
    points = values[valid]
    if len(points):
        if points.shape[1] == 1:
            front = points[:, 0] == points[:, 0].max()
        elif points.shape[1] == 2:
            front = _front_2d(points[:, 0], points[:, 1])
        else:
            front = _front_nd(points)
        mask[np.flatnonzero(valid)] = front
    return pd.Series(mask, index=df.index, name="pareto")


def _front_2d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-dominated mask for maximising both ``a`` and ``b``: one sort, one sweep."""
    order = np.lexsort((-b, -a))  # a descending, ties broken by b descending
    a_s, b_s = a[order], b[order]
    group_start = np.r_[True, a_s[1:] != a_s[:-1]]
    group = np.cumsum(group_start) - 1
    group_best_b = b_s[group_start]  # first of each equal-a group has its largest b
    # best b among strictly larger a: any point at or below it is dominated
    best_before = np.r_[-np.inf, np.maximum.accumulate(group_best_b)[:-1]]
    front_sorted = (b_s == group_best_b[group]) & (b_s > best_before[group])
    front = np.empty_like(front_sorted)
    front[order] = front_sorted
    return front


def _front_nd(points: np.ndarray) -> np.ndarray:
    n = len(points)
    dominated = np.zeros(n, dtype=bool)
    for start in range(0, n, _CHUNK):
        block = points[start : start + _CHUNK, None, :]  # (c, 1, k) candidates
        ge = (points[None, :, :] >= block).all(axis=2)  # (c, n): others at least as good
        gt = (points[None, :, :] > block).any(axis=2)
        dominated[start : start + _CHUNK] = (ge & gt).any(axis=1)
    return ~dominated

