"""Configurations (means over seeds), fair pairs of arms, and trend fits: the tables the
report's claims rest on. Pure functions over a results DataFrame.

A configuration is one value of every swept knob; its seeds are its replicates. Floors are
per trial, so a configuration's floors are those of its own architecture and evaluation
settings, never a mean over other widths; and those of its accuracy's protocol
(`verdict.floor_columns`): a configurations table carries that protocol's floors only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .stats import LinearFit, difference_interval, linear_fit, mean_interval
from .summary import describe_value, finished, fmt_number, full_size_value, label, scaled_kind
from .verdict import NOT_MEANINGFUL, classify, floor_columns, floors_beaten, floors_in

LENGTH_KNOBS = ("epochs", "steps_config")  # knobs that set how long a trial trains
COMPUTE_TOLERANCE = 1.25  # arms within this factor of each other's train PFLOPs count as equal compute
STEPS_TOLERANCE = 0.02  # relative difference in optimiser steps still "equal steps"

EQUAL_EPOCHS = "equal epochs"
EQUAL_STEPS = "equal steps"
EQUAL_COMPUTE = "equal compute"


def reported_column(accuracy: str) -> str:
    """The test-split column a report states for an objective (``knn_val_top1`` -> ``knn_top1``)."""
    return accuracy.replace("_val_top1", "_top1")


def selection_column(accuracy: str, df: pd.DataFrame) -> str:
    """The validation-split column that selects (falls back to the test column in older stores)."""
    val = reported_column(accuracy).replace("_top1", "_val_top1")
    if val in df and pd.to_numeric(df[val], errors="coerce").notna().any():
        return val
    return reported_column(accuracy)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


STAT_COLUMNS = ("n_seeds", "seeds", "by_seed", "trial_ids", "accuracy", "low", "high", "interval_method", "interval",
                "selection", "selection_by_seed", "selection_size", "cost", "steps", "test_size", "run_length", "run_unit")


def configurations(df: pd.DataFrame, knobs: Sequence[str], accuracy: str = "knn_top1",
                   cost: str = "train_pflops") -> pd.DataFrame:
    """One row per configuration of the finished trials: knob values, seeds, the accuracy mean
    with its interval (``interval``: a stats.Interval), the selection (validation) mean and its
    per-seed values and split size, mean
    cost, mean floors (of the accuracy's protocol), optimiser steps and the trial ids."""
    reported = reported_column(accuracy)
    select = selection_column(accuracy, df)
    keys = [k for k in knobs if k in df]
    clash = set(keys) & set(STAT_COLUMNS)
    if clash:
        raise ValueError(f"knob columns {sorted(clash)} clash with the configuration table's own columns")
    floors = floor_columns(accuracy)
    columns = [*keys, *STAT_COLUMNS, *floors]
    done = finished(df, reported) if reported in df else df.iloc[0:0]
    if done.empty:
        return pd.DataFrame(columns=columns)
    groups = done.groupby(keys, dropna=False, sort=False) if keys else [((), done)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        seeds = group["seed"] if "seed" in group else pd.Series(range(len(group)), index=group.index)
        by_seed = group.assign(_seed=seeds)[["_seed", reported]].groupby("_seed")[reported].mean().to_dict()
        selection_by_seed = (group.assign(_seed=seeds, _select=pd.to_numeric(group[select], errors="coerce"))
                             .groupby("_seed")["_select"].mean().to_dict())
        test_size = _mean(group, "test_size")
        interval = mean_interval(list(by_seed.values()), test_size)
        rows.append({
            **dict(zip(keys, key)),
            "n_seeds": len(by_seed),
            "seeds": tuple(sorted(by_seed)),
            "by_seed": by_seed,
            "trial_ids": tuple(group["trial_id"]),
            "accuracy": interval.mean, "low": interval.low, "high": interval.high, "interval_method": interval.method,
            "interval": interval,
            "selection": _mean(group, select),
            "selection_by_seed": selection_by_seed,
            "selection_size": _mean(group, "val_size" if select != reported else "test_size"),
            "cost": _mean(group, cost),
            "steps": _mean(group, "steps"),
            "test_size": test_size,
            **_run_length(group),
            **{c: _mean(group, c) for c in floors},
        })
    return pd.DataFrame(rows, columns=columns)


def _run_length(group: pd.DataFrame) -> dict[str, Any]:
    """How long a configuration trains in all, in its own unit: the trial's epochs or steps, which
    for a resolution schedule is the sum of its stages (the config normalises it so)."""
    for column, unit in (("steps_config", "steps"), ("epochs", "epochs")):
        if column in group:
            values = pd.to_numeric(group[column], errors="coerce").dropna()
            if len(values):
                return {"run_length": float(values.mean()), "run_unit": unit}
    return {"run_length": float("nan"), "run_unit": None}


def _mean(group: pd.DataFrame, column: str) -> float:
    if column not in group:
        return float("nan")
    values = pd.to_numeric(group[column], errors="coerce")
    return float(values.mean()) if values.notna().any() else float("nan")


def config_words(row: pd.Series, knobs: Sequence[str]) -> str:
    """'14 px, width 0.5x, 10% of the data' for one configuration row."""
    words = [describe_value(k, row[k]) if scaled_kind(k) else f"{label(k)} {fmt_number(row[k])}"
             for k in knobs if k in row.index and _is_set(row[k])]
    return ", ".join(words) or "the only configuration"


# ---------------------------------------------------------------- fair pairs


PAIR_COLUMNS = [
    "knob", "value", "full_value", "pairing", "context", "seeds", "accuracy", "full_accuracy", "diff", "diff_low",
    "diff_high", "diff_interval", "cost_ratio", "length", "full_length", "full_floors_beaten", "floor_missed",
    "verdict", "primary", "trial_ids", "full_trial_ids",
]  # then full_<floor> for each floor the configurations carry


def _length(row: pd.Series, lengths: Sequence[str]) -> str:
    """'16 epochs': how long an arm trains, by the swept length knobs or else its total run length."""
    parts = []
    for k in lengths:
        v = row.get(k)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            parts.append(f"{fmt_number(v)} {'epochs' if k == 'epochs' else 'steps'}")
    total = _float(row.get("run_length"))
    if not parts and math.isfinite(total):
        parts.append(f"{fmt_number(total)} {row.get('run_unit')}")
    return ", ".join(parts)


def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def fair_pairs(configs: pd.DataFrame, knobs: Sequence[str]) -> pd.DataFrame:
    """Each scaled-down configuration against full size, by every fair pairing the study allows.

    - equal epochs: every other knob equal (equal steps when the run length is set in steps);
    - equal compute: every other knob but the run length equal, the scaled-down arm trained
      longer, train PFLOPs within a factor of ``COMPUTE_TOLERANCE`` (closest one kept);
    - equal steps (data fraction): every other knob but the run length equal, optimiser steps
      within ``STEPS_TOLERANCE``.
    """
    knobs = [k for k in knobs if k in configs]
    lengths = [k for k in knobs if k in LENGTH_KNOBS]
    rows: list[dict[str, Any]] = []
    for knob in knobs:
        kind = scaled_kind(knob)
        if kind is None or knob in LENGTH_KNOBS or configs.empty:
            continue
        full = full_size_value(knob, configs[knob])
        if full is None:
            continue
        is_full = configs[knob] == full
        fulls, scaled = configs[is_full], configs[~is_full & configs[knob].notna()]
        others = [k for k in knobs if k != knob]
        fixed = [k for k in others if k not in lengths]
        for _, arm in scaled.iterrows():
            same = fulls[np.logical_and.reduce([_equal(fulls[k], arm[k]) for k in fixed])] if fixed else fulls
            for _, ref in same.iterrows():
                if _equal_length(arm, ref, lengths):
                    steps_set = arm.get("run_unit") == "steps" or ("steps_config" in arm.index and _is_set(arm["steps_config"]))
                    rows.append(_pair(knob, full, EQUAL_STEPS if steps_set else EQUAL_EPOCHS, arm, ref, fixed,
                                      lengths))
            longer = [ref for _, ref in same.iterrows() if not _equal_length(arm, ref, lengths)]
            compute = [r for r in longer if _within(arm["cost"], r["cost"], COMPUTE_TOLERANCE)
                       and _longer(arm, r, lengths)]
            if compute:
                ref = min(compute, key=lambda r: abs(math.log(arm["cost"] / r["cost"])))
                rows.append(_pair(knob, full, EQUAL_COMPUTE, arm, ref, fixed, lengths))
            if kind == "data_fraction":
                steps = [r for r in longer if _within(arm["steps"], r["steps"], 1 + STEPS_TOLERANCE)]
                if steps:
                    ref = min(steps, key=lambda r: abs(arm["steps"] - r["steps"]))
                    rows.append(_pair(knob, full, EQUAL_STEPS, arm, ref, fixed, lengths))
    table = pd.DataFrame(rows, columns=[*PAIR_COLUMNS, *(f"full_{c}" for c in floors_in(configs.columns))])
    if not table.empty:
        table["primary"] = _primary(table, configs, knobs)
    return table


def _equal(column: pd.Series, value: Any) -> np.ndarray:
    if not _is_set(value):
        return column.isna().to_numpy()
    return (column == value).to_numpy()


def _same(a: Any, b: Any) -> bool:
    return (not _is_set(a) and not _is_set(b)) or a == b


def _within(a: float, b: float, factor: float) -> bool:
    return all(math.isfinite(x) and x > 0 for x in (a, b)) and max(a / b, b / a) <= factor


def _equal_length(arm: pd.Series, ref: pd.Series, lengths: Sequence[str]) -> bool:
    """Both arms train as long: the swept length knobs agree and so does the total run length
    (a schedule's stages may sum to more or fewer epochs than the trial's own)."""
    if not all(_same(arm[k], ref[k]) for k in lengths):
        return False
    a, b = (_float(x.get("run_length")) for x in (arm, ref))
    if not (math.isfinite(a) and math.isfinite(b)):
        return True  # no run length recorded (an older or hand-made table): the swept knobs decide
    return arm.get("run_unit") == ref.get("run_unit") and a == b


def _longer(arm: pd.Series, ref: pd.Series, lengths: Sequence[str]) -> bool:
    """The scaled-down arm trains for more epochs or steps than the full-size one."""
    if any(_is_set(arm[k]) and _is_set(ref[k]) and float(arm[k]) > float(ref[k]) for k in lengths):
        return True
    a, b = (_float(x.get("run_length")) for x in (arm, ref))
    return arm.get("run_unit") == ref.get("run_unit") and math.isfinite(a) and math.isfinite(b) and a > b


def config_floors_beaten(config: pd.Series) -> tuple[bool, str | None]:
    """`floors_beaten` for a row of `configurations`: its accuracy interval against its own floors."""
    return floors_beaten(config["interval"], {c: config[c] for c in floors_in(config.index)})


def _pair(knob: str, full: Any, pairing: str, arm: pd.Series, ref: pd.Series, fixed: Sequence[str],
          lengths: Sequence[str]) -> dict[str, Any]:
    diff = difference_interval(arm["by_seed"], ref["by_seed"], np.nanmean([arm["test_size"], ref["test_size"]])
                               if any(math.isfinite(_float(x)) for x in (arm["test_size"], ref["test_size"]))
                               else float("nan"))
    beaten, missed = config_floors_beaten(ref)
    return {
        "knob": knob, "value": arm[knob], "full_value": full, "pairing": pairing,
        "context": ", ".join(f"{label(k)}={fmt_number(arm[k])}" for k in fixed),
        "seeds": diff.n, "accuracy": arm["accuracy"], "full_accuracy": ref["accuracy"],
        "diff": diff.mean, "diff_low": diff.low, "diff_high": diff.high, "diff_interval": diff,
        "cost_ratio": arm["cost"] / ref["cost"] if ref["cost"] and math.isfinite(ref["cost"]) else float("nan"),
        "length": _length(arm, lengths), "full_length": _length(ref, lengths),
        "full_floors_beaten": beaten, "floor_missed": missed,
        "verdict": classify(diff) if beaten else NOT_MEANINGFUL,
        "primary": False, "trial_ids": arm["trial_ids"], "full_trial_ids": ref["trial_ids"],
        **{f"full_{c}": ref[c] for c in floors_in(ref.index)},
    }


def _primary(table: pd.DataFrame, configs: pd.DataFrame, knobs: Sequence[str]) -> list[bool]:
    """Per (knob, value, pairing): the pair whose other scaled knobs sit at full size (then the
    one with most seeds) speaks for the setting in the verdict line."""
    full_values = {k: full_size_value(k, configs[k]) for k in knobs if scaled_kind(k) and k not in LENGTH_KNOBS}
    score = []
    for row in table.itertuples(index=False):
        at_full = sum(f"{label(k)}={fmt_number(v)}" in row.context.split(", ")
                      for k, v in full_values.items() if k != row.knob and v is not None)
        score.append((at_full, row.seeds))
    ranked = table.assign(_score=score, _order=range(len(table)))
    best = ranked.sort_values("_order").groupby(["knob", "value", "pairing"], sort=False)["_score"].transform("max")
    primary = (ranked["_score"] == best).to_numpy()
    seen: set = set()
    out = []
    for flag, row in zip(primary, table.itertuples(index=False)):
        key = (row.knob, str(row.value), row.pairing)
        out.append(bool(flag) and key not in seen)
        if flag:
            seen.add(key)
    return out


# ---------------------------------------------------------------- trend fits


TREND_COLUMNS = ["knob", "full_value", "small_value", "diff", "diff_low", "diff_high", "diff_interval",
                 "per_halving", "per_halving_low", "per_halving_high", "cost_ratio", "trials", "verdict",
                 "full_floors_beaten", "floor_missed"]


def trend_knobs(df: pd.DataFrame, knobs: Sequence[str]) -> list[str]:
    """Numeric, positive scaled knobs with two or more distinct values (schedules use the final resolution)."""
    out = []
    for knob in knobs:
        column = "resolution" if knob == "resolution_schedule" else knob
        if scaled_kind(knob) is None or column not in df or column in out:
            continue
        values = pd.to_numeric(df[column], errors="coerce")
        if values.notna().all() and (values > 0).all() and values.nunique() >= 2:
            out.append(column)
    return out


@dataclass(frozen=True)
class TrendModel:
    """Joint least-squares fits over the finished trials; regressors are log2 of ``columns``."""

    trials: pd.DataFrame
    reported: str  # the accuracy column fitted
    columns: list[str]
    accuracy: LinearFit
    cost: LinearFit | None
    schedules: pd.DataFrame  # finished trials with a resolution schedule: not points of the fit


def is_schedule(df: pd.DataFrame) -> pd.Series:
    """Trials pre-trained with more than one resolution stage."""
    if "resolution_stages" in df:
        stages = pd.to_numeric(df["resolution_stages"], errors="coerce")
        if stages.notna().all():
            return stages > 1
    if "resolution_schedule" in df:
        return df["resolution_schedule"].map(lambda s: s is not None and s.staged).astype(bool)
    return pd.Series(False, index=df.index)


def trend_model(df: pd.DataFrame, knobs: Sequence[str], accuracy: str = "knn_top1",
                cost: str = "train_pflops") -> TrendModel | None:
    reported = reported_column(accuracy)
    done = finished(df, reported, cost) if {reported, cost} <= set(df.columns) else df.iloc[0:0]
    done = done[pd.to_numeric(done[cost], errors="coerce") > 0] if len(done) else done
    # a schedule's `resolution` is its largest stage: fitted as that, it would pass for a full-size point
    schedules, done = (done[is_schedule(done)], done[~is_schedule(done)]) if len(done) else (done, done)
    columns = trend_knobs(done, knobs) if len(done) else []
    if not columns:
        return None
    X = np.column_stack([np.log2(done[c].astype(float)) for c in columns])
    acc_fit = linear_fit(X, done[reported].astype(float).to_numpy(), columns)
    if acc_fit is None:
        return None
    cost_fit = linear_fit(X, np.log2(done[cost].astype(float).to_numpy()), columns)
    return TrendModel(done, reported, columns, acc_fit, cost_fit, schedules)


def trend_fits(df: pd.DataFrame, knobs: Sequence[str], accuracy: str = "knn_top1",
               cost: str = "train_pflops") -> pd.DataFrame:
    """Accuracy and log cost against log2 of every numeric scaled knob, fitted jointly over the
    finished trials (each seed a point): for random and Optuna studies, whose points rarely
    share every other knob. Per knob: the fitted change from its largest to its smallest
    value (with interval and verdict), per halving, and the fitted cost ratio."""
    model = trend_model(df, knobs, accuracy, cost)
    if model is None:
        return pd.DataFrame(columns=TREND_COLUMNS)
    reported = reported_column(accuracy)
    done, columns, acc_fit, cost_fit = model.trials, model.columns, model.accuracy, model.cost
    rows = []
    for column in columns:
        values = done[column].astype(float)
        full, small = float(values.max()), float(values.min())
        delta = math.log2(small / full)
        diff = acc_fit.interval(column, delta)
        per_halving = acc_fit.interval(column, -1.0)
        cost_ratio = 2 ** cost_fit.interval(column, delta).mean if cost_fit is not None else float("nan")
        at_full = done[values == full]
        full_acc = mean_interval(list(at_full[reported].astype(float)), _mean(at_full, "test_size"))
        beaten, missed = floors_beaten(full_acc, {c: _mean(at_full, c) for c in floor_columns(accuracy)})
        rows.append({
            "knob": column, "full_value": full, "small_value": small, "diff": diff.mean, "diff_low": diff.low,
            "diff_high": diff.high, "diff_interval": diff, "per_halving": per_halving.mean,
            "per_halving_low": per_halving.low, "per_halving_high": per_halving.high, "cost_ratio": cost_ratio,
            "trials": acc_fit.n, "verdict": classify(diff) if beaten else NOT_MEANINGFUL,
            "full_floors_beaten": beaten, "floor_missed": missed,
        })
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


