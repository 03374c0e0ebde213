"""Pure summaries of a results table: knobs, headline, the S3L check, cost-model error."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .pareto import objective_signs

DEFAULT_OBJECTIVES = {"knn_top1": "max", "train_pflops": "min"}
ALIASES = {"width": "backbone.width", "depth": "backbone.depth", "lr": "optimizer.lr"}
# a trial-level `stages: [{resolution, epochs}, ...]` is a resolution schedule (backbone.stages is not)
SCHEDULE_KNOBS = ("stages", "resolution_stages", "resolution.stages")
# knobs S3L scales down, and what "full size" means for each
SCALED_KINDS = ("resolution", "width", "depth", "stages", "data_fraction")

LABELS = {
    "trial_id": "trial",
    "knn_top1": "kNN top-1",
    "knn_top1_best": "best kNN top-1",
    "linear_top1": "linear top-1",
    "knn_pixels_top1": "raw-pixel kNN top-1",
    "knn_random_top1": "random-encoder kNN top-1",
    "train_pflops": "train PFLOPs",
    "eval_pflops": "eval PFLOPs",
    "predicted_train_pflops": "predicted train PFLOPs",
    "gpu_hours": "GPU-hours",
    "wall_s": "wall-clock s",
    "img_per_s": "images/s",
    "peak_mem_mb": "peak memory MB",
    "resolution_schedule": "resolution",
    "backbone.width": "width",
    "backbone.depth": "depth",
    "backbone.stages": "stages",
    "data_fraction": "data fraction",
}


def label(column: str) -> str:
    return LABELS.get(column, column)


def is_accuracy(column: str) -> bool:
    """Accuracy-like metrics are fractions in [0, 1], shown in percent."""
    return re.search(r"top\d|acc", column) is not None


# ---------------------------------------------------------------- objectives, knobs


def study_objectives(study: Mapping[str, Any], df: pd.DataFrame | None = None) -> dict[str, str]:
    """The study's declared objectives (first = primary accuracy), else kNN vs train PFLOPs."""
    declared = study.get("objectives") if isinstance(study, Mapping) else None
    objectives: dict[str, str] = {}
    if isinstance(declared, Mapping):
        objectives = {str(k): str(v) for k, v in declared.items()}
    elif isinstance(declared, Sequence) and not isinstance(declared, str):  # [{name: max}, ...]
        for item in declared:
            if isinstance(item, Mapping):
                objectives.update({str(k): str(v) for k, v in item.items()})
    try:
        objective_signs(objectives)
    except ValueError:
        objectives = {}
    if df is not None:
        objectives = {k: v for k, v in objectives.items() if k in df.columns}
    if not objectives or list(objectives.values())[0].lower().startswith("min"):
        objectives = {**DEFAULT_OBJECTIVES, **objectives}
    if len(objectives) == 1:
        objectives.setdefault("train_pflops", "min")
    return objectives


def primary_cost(objectives: Mapping[str, str]) -> str:
    """The first minimised objective (the cost the headline compares), else train PFLOPs."""
    for name, direction in list(objectives.items())[1:]:
        if str(direction).lower().startswith("min"):
            return name
    return "train_pflops"


def knob_columns(study: Mapping[str, Any], df: pd.DataFrame) -> list[str]:
    """Result columns of the swept knobs (keys of the study's ``space``; never ``seed``)."""
    space = study.get("space") if isinstance(study, Mapping) else None
    if not isinstance(space, Mapping):
        return []
    columns: list[str] = []
    for knob, spec in space.items():
        col = _knob_column(str(knob), spec, df)
        if col and col not in columns:
            columns.append(col)
    return columns


def _knob_column(knob: str, spec: Any, df: pd.DataFrame) -> str | None:
    name = knob.removeprefix("trial.")
    if name in ("seed", "seeds"):
        return None
    if name in SCHEDULE_KNOBS or name == "resolution":
        schedule = "resolution_schedule" in df and (
            name != "resolution" or _has_stage_lists(spec) or _has_multi_stage(df["resolution_schedule"])
        )
        if schedule:
            return "resolution_schedule"
        return "resolution" if "resolution" in df else None
    for candidate in (name, knob, ALIASES.get(name, "")):
        if candidate and candidate in df.columns:
            return candidate
    suffix = [c for c in df.columns if c.endswith("." + name)]
    return suffix[0] if len(suffix) == 1 else None


def _has_stage_lists(spec: Any) -> bool:
    values = []
    if isinstance(spec, Mapping):
        for v in spec.values():
            values.extend(v if isinstance(v, list) else [v])
    elif isinstance(spec, list):
        values = spec
    return any(isinstance(v, (list, Mapping)) for v in values)


def _has_multi_stage(schedules: pd.Series) -> bool:
    return bool(schedules.dropna().astype(str).str.contains(",").any())


def scaled_kind(column: str) -> str | None:
    if column in ("resolution", "resolution_schedule"):
        return "resolution"
    last = column.split(".")[-1]
    return last if last in SCALED_KINDS else None


def parse_schedule(value: Any) -> list[tuple[int, int | None]]:
    """``"14x8,28x2"`` -> [(14, 8), (28, 2)]; ``"28"`` -> [(28, None)]; junk -> []."""
    stages = []
    for part in str(value).split(","):
        res, _, epochs = part.strip().partition("x")
        try:
            stages.append((int(float(res)), int(epochs) if epochs else None))
        except ValueError:
            return []
    return stages


def describe_value(column: str, value: Any) -> str:
    """Human wording of a knob value: '14 px', '14 px for 8 epochs then 28 px for 2'."""
    kind = scaled_kind(column)
    if kind == "resolution":
        stages = parse_schedule(value)
        if len(stages) == 1:
            return f"{stages[0][0]} px"
        if stages:
            parts = [f"{r} px" + (f" for {e}" if e else "") for r, e in stages]
            if stages[0][1]:
                parts[0] += " epochs"
            return " then ".join(parts)
    if kind == "width":
        return f"width {fmt_number(value)}x"
    if kind == "depth":
        return f"depth {fmt_number(value)}"
    if kind == "stages":
        return f"{fmt_number(value)} stages"
    if kind == "data_fraction":
        return f"{fmt_pct(float(value))} of the data"
    return f"{label(column)}={fmt_number(value)}"


# ---------------------------------------------------------------- formatting


def fmt_number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if v.is_integer() and abs(v) < 1e6:
            return str(int(v))
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(value)


def fmt_pct(fraction: float) -> str:
    """0.987 -> '98.7%'; 0.27 -> '27%'; 0.031 -> '3.1%'; 0.0042 -> '0.42%'."""
    if fraction is None or not math.isfinite(fraction):
        return "–"
    pct = 100.0 * fraction
    if abs(pct) >= 10:
        return f"{pct:.0f}%"
    if abs(pct) >= 1:
        return f"{pct:.1f}%"
    return f"{pct:.2g}%"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def fmt_acc(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


# ---------------------------------------------------------------- headline


@dataclass(frozen=True)
class Headline:
    counts: dict[str, int]
    accuracy: str
    cost: str
    best: pd.Series | None = None
    cheapest: pd.Series | None = None  # cheapest trial within `within` of the best
    cost_fraction: float = float("nan")  # cheapest's cost / best's cost
    sentences: list[str] = field(default_factory=list)


def status_counts(df: pd.DataFrame) -> dict[str, int]:
    counts = {"total": len(df), "finished": 0, "failed": 0, "running": 0, "pending": 0, "skipped_budget": 0}
    if len(df):
        for status, n in df["status"].value_counts().items():
            counts[str(status)] = counts.get(str(status), 0) + int(n)
    return counts


def finished(df: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Finished rows with every named column present (finite)."""
    out = df[df["status"] == "finished"] if "status" in df else df
    for col in columns:
        out = out[np.isfinite(pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float))]
    return out


def headline(
    df: pd.DataFrame, objectives: Mapping[str, str], within: float = 0.01, knobs: Sequence[str] = ()
) -> Headline:
    """Best trial by the primary objective, and the cheapest trial within ``within`` of it.

    ``within`` is absolute (0.01 = 1 point of a [0, 1] accuracy); ties at the best value go
    to the cheaper trial. ``knobs`` only adds the trials' knob values to the sentences.
    """
    accuracy = next(iter(objectives))
    cost = primary_cost(objectives)
    counts = status_counts(df)
    sentences = [_counts_sentence(counts)]
    done = finished(df, accuracy) if accuracy in df else df.iloc[0:0]
    if done.empty:
        sentences.insert(0, f"No finished trial has a {label(accuracy)} value yet.")
        return Headline(counts, accuracy, cost, sentences=sentences)
    maximise = objective_signs({accuracy: objectives[accuracy]})[accuracy] > 0
    acc = done[accuracy].astype(float)
    cost_values = done[cost].astype(float) if cost in done else pd.Series(np.nan, index=done.index)
    best_value = acc.max() if maximise else acc.min()
    at_best = done[acc == best_value]
    best = at_best.loc[cost_values[at_best.index].fillna(np.inf).idxmin()]
    tolerance = within + 1e-9
    near = done[(best_value - acc <= tolerance) if maximise else (acc - best_value <= tolerance)]
    near_costs = cost_values[near.index]
    cheapest = near.loc[near_costs.idxmin()] if near_costs.notna().any() else best
    best_cost, cheapest_cost = float(best.get(cost, np.nan)), float(cheapest.get(cost, np.nan))
    fraction = cheapest_cost / best_cost if best_cost > 0 else float("nan")
    if is_accuracy(accuracy):
        margin = "1 point" if abs(within - 0.01) < 1e-12 else f"{100 * within:g} points"
    else:
        margin = fmt_number(within)
    sentences.insert(0, f"Best {label(accuracy)}: {_value(accuracy, best_value)} ({_trial_words(best, knobs)}).")
    if cheapest["trial_id"] == best["trial_id"]:
        sentences.insert(1, f"No cheaper trial comes within {margin} of it.")
    else:
        sentences.insert(
            1,
            f"Cheapest within {margin}: {_value(accuracy, cheapest[accuracy])} at "
            f"{fmt_pct(fraction)} of the best trial's {label(cost)} ({_trial_words(cheapest, knobs)}).",
        )
    return Headline(counts, accuracy, cost, best, cheapest, fraction, sentences)


def _value(column: str, value: float) -> str:
    return fmt_acc(float(value)) if is_accuracy(column) else fmt_number(float(value))


def _trial_words(row: pd.Series, knobs: Sequence[str] = ()) -> str:
    words = [f"trial {row['trial_id']}"]
    words += [f"{label(k)} {fmt_number(row[k])}" for k in knobs if k in row.index]
    seed = row.get("seed")
    if seed is not None and not pd.isna(seed):
        words.append(f"seed {fmt_number(seed)}")
    return ", ".join(words)


def _counts_sentence(counts: Mapping[str, int]) -> str:
    parts = [f"{plural(counts['total'], 'trial')}: {counts['finished']} finished, {counts['failed']} failed, "
             f"{counts['running']} running"]
    for key in ("pending", "skipped_budget"):
        if counts.get(key):
            parts.append(f"{counts[key]} {key.replace('_', ' ')}")
    others = {k: v for k, v in counts.items()
              if k not in ("total", "finished", "failed", "running", "pending", "skipped_budget") and v}
    parts.extend(f"{v} {k}" for k, v in others.items())
    return ", ".join(parts) + "."


# ---------------------------------------------------------------- the S3L check


CHECK_COLUMNS = [
    "knob", "value", "full_value", "seed", "context", "trial_id", "full_trial_id",
    "accuracy", "full_accuracy", "accuracy_ratio", "accuracy_diff", "cost", "full_cost", "cost_ratio",
]


def full_size_value(column: str, values: pd.Series) -> Any:
    """The full-size setting of a scaled knob among ``values``, or None."""
    values = values.dropna()
    if values.empty:
        return None
    kind = scaled_kind(column)
    if column == "resolution_schedule":
        single = {v: parse_schedule(v) for v in values.unique()}
        single = {v: s[0][0] for v, s in single.items() if len(s) == 1}
        return max(single, key=single.get) if single else None
    if kind == "data_fraction" and (values.astype(float) == 1.0).any():
        return values[values.astype(float) == 1.0].iloc[0]
    return values.max()


def s3l_check(
    df: pd.DataFrame,
    knobs: Sequence[str],
    accuracy: str = "knn_top1",
    cost: str = "train_pflops",
) -> tuple[pd.DataFrame, list[str]]:
    """Each scaled-down finished trial against the full-size trial of the same seed.

    For every scaled knob (resolution, width, depth, stages, data fraction) among
    ``knobs``, a trial is paired with the full-size trial that has the same seed and the
    same value of every other knob. Returns one row per pair and one sentence per scaled
    value (means over its pairs), e.g. "pre-training at 14 px reached 98.7% of the
    28 px accuracy at 27% of its cost".
    """
    knobs = [k for k in knobs if k in df.columns]
    done = finished(df, accuracy, cost) if {accuracy, cost} <= set(df.columns) else df.iloc[0:0]
    rows: list[pd.DataFrame] = []
    sentences: list[str] = []
    for knob in knobs:
        if scaled_kind(knob) is None or done.empty:
            continue
        full = full_size_value(knob, done[knob])
        if full is None:
            continue
        keys = [k for k in knobs if k != knob] + (["seed"] if "seed" in done else [])
        is_full = done[knob] == full
        reference = (
            done[is_full].groupby(keys, dropna=False, sort=False)
            .agg(full_trial_id=("trial_id", "first"), full_accuracy=(accuracy, "mean"), full_cost=(cost, "mean"))
            .reset_index()
            if keys
            else pd.DataFrame({
                "full_trial_id": [done.loc[is_full, "trial_id"].iloc[0]] if is_full.any() else [],
                "full_accuracy": [done.loc[is_full, accuracy].mean()] if is_full.any() else [],
                "full_cost": [done.loc[is_full, cost].mean()] if is_full.any() else [],
            })
        )
        scaled = done[~is_full]
        if scaled.empty or reference.empty:
            continue
        pairs = scaled.merge(reference, on=keys, how="inner") if keys else scaled.merge(reference, how="cross")
        if pairs.empty:
            continue
        others = [k for k in keys if k != "seed"]
        out = pd.DataFrame({
            "knob": knob,
            "value": pairs[knob].astype(object),
            "full_value": [full] * len(pairs),
            "seed": pairs["seed"] if "seed" in pairs else np.nan,
            "context": _context(pairs, others),
            "trial_id": pairs["trial_id"],
            "full_trial_id": pairs["full_trial_id"],
            "accuracy": pairs[accuracy].astype(float),
            "full_accuracy": pairs["full_accuracy"].astype(float),
            "cost": pairs[cost].astype(float),
            "full_cost": pairs["full_cost"].astype(float),
        })
        out["accuracy_ratio"] = out["accuracy"] / out["full_accuracy"]
        out["accuracy_diff"] = out["accuracy"] - out["full_accuracy"]
        out["cost_ratio"] = out["cost"] / out["full_cost"]
        out = out.sort_values(["cost_ratio", "seed"], ascending=[False, True], kind="stable")
        rows.append(out[CHECK_COLUMNS])
        sentences.extend(_check_sentences(knob, full, out, accuracy, cost))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=CHECK_COLUMNS)
    return table, sentences


def _context(pairs: pd.DataFrame, others: list[str]) -> list[str]:
    if not others:
        return [""] * len(pairs)
    parts = [pairs[c].map(fmt_number).radd(f"{label(c)}=") for c in others]
    joined = parts[0]
    for p in parts[1:]:
        joined = joined + ", " + p
    return joined.tolist()


def s3l_summary(check: pd.DataFrame) -> pd.DataFrame:
    """One row per (knob, scaled value) of an ``s3l_check`` table: means over its pairs."""
    if check.empty:
        return pd.DataFrame(columns=["knob", "value", "full_value", "pairs", "accuracy_ratio", "accuracy_diff",
                                     "cost_ratio"])
    return (
        check.groupby(["knob", "value"], sort=False)
        .agg(full_value=("full_value", "first"), pairs=("trial_id", "size"),
             accuracy_ratio=("accuracy_ratio", "mean"), accuracy_diff=("accuracy_diff", "mean"),
             cost_ratio=("cost_ratio", "mean"))
        .reset_index()
    )


def _check_sentences(knob: str, full: Any, pairs: pd.DataFrame, accuracy: str, cost: str) -> list[str]:
    sentences = []
    for row in s3l_summary(pairs).itertuples(index=False):
        subject = describe_value(knob, row.value)
        if scaled_kind(knob) == "resolution":
            subject = "pre-training at " + subject
        reference = "full-data" if scaled_kind(knob) == "data_fraction" else describe_value(knob, full)
        points = f"{100 * row.accuracy_diff:+.1f} points" if is_accuracy(accuracy) else f"{row.accuracy_diff:+.3g}"
        over = f"mean of {row.pairs} same-seed pairs" if row.pairs > 1 else "one pair"
        sentences.append(
            f"{subject[0].upper()}{subject[1:]} reached {100 * row.accuracy_ratio:.1f}% of the {reference} "
            f"{'accuracy' if is_accuracy(accuracy) else label(accuracy)} ({points}) at "
            f"{fmt_pct(row.cost_ratio)} of its cost ({label(cost)}; {over})."
        )
    return sentences


# ---------------------------------------------------------------- cost model, seeds


def cost_model_error(df: pd.DataFrame) -> pd.DataFrame:
    """Finished trials with both costs: measured / predicted - 1 in ``error``."""
    done = finished(df, "train_pflops", "predicted_train_pflops")
    done = done[(done["predicted_train_pflops"] > 0) & (done["train_pflops"] > 0)]
    out = done[["trial_id", "predicted_train_pflops", "train_pflops"]].copy()
    out["error"] = out["train_pflops"] / out["predicted_train_pflops"] - 1.0
    return out


def knob_summary(df: pd.DataFrame, knob: str, column: str, by: Sequence[str] = ()) -> pd.DataFrame:
    """Mean, standard deviation and count of ``column`` per knob value (and ``by`` group)."""
    done = finished(df, column)
    keys = [*by, knob]
    if done.empty:
        return pd.DataFrame(columns=[*keys, "mean", "std", "n"])
    return (
        done.groupby(keys, dropna=False, sort=True)[column]
        .agg(mean="mean", std="std", n="count")
        .reset_index()
    )
