"""Pure helpers over a results table: objectives, knobs, labels and wording of values, cost-model error."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweeper.study.resolution_schedule import ResolutionSchedule

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
    "linear_pixels_top1": "raw-pixel linear top-1",
    "linear_random_top1": "random-encoder linear top-1",
    "finetune_random_top1": "fine-tune from random init top-1",
    "knn_val_pixels_top1": "validation raw-pixel kNN top-1",
    "knn_val_random_top1": "validation random-encoder kNN top-1",
    "linear_val_pixels_top1": "validation raw-pixel linear top-1",
    "linear_val_random_top1": "validation random-encoder linear top-1",
    "finetune_val_random_top1": "validation fine-tune from random init top-1",
    "knn_val_top1": "validation kNN top-1",
    "linear_val_top1": "validation linear top-1",
    "finetune_top1": "fine-tune top-1",
    "finetune_val_top1": "validation fine-tune top-1",
    "train_pflops": "train PFLOPs (counted)",
    "eval_pflops": "eval PFLOPs (counted)",
    "total_pflops": "total PFLOPs (counted)",
    "predicted_train_pflops": "predicted train PFLOPs",
    "gpu_hours": "GPU-hours (measured)",
    "wall_s": "wall-clock s (measured)",
    "train_s": "train s (measured)",
    "test_size": "test images",
    "feature_rank": "feature rank",
    "steps": "optimiser steps",
    "steps_config": "steps",
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
    if name == "steps":  # the run-length knob; `steps` itself is the optimiser steps taken
        return "steps_config" if "steps_config" in df else None
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
    return any(s.staged for s in schedules.dropna())


def scaled_kind(column: str) -> str | None:
    if column in ("resolution", "resolution_schedule"):
        return "resolution"
    last = column.split(".")[-1]
    return last if last in SCALED_KINDS else None


def as_schedule(value: Any) -> ResolutionSchedule | None:
    """A resolution knob's value as a schedule: the report's column holds schedules; a plain
    resolution column holds ints."""
    if isinstance(value, ResolutionSchedule):
        return value
    try:
        return ResolutionSchedule((int(value),))
    except (TypeError, ValueError):
        return None


def describe_value(column: str, value: Any) -> str:
    """Human wording of a knob value: '14 px', '14 px for 8 epochs then 28 px for 2'."""
    kind = scaled_kind(column)
    if kind == "resolution":
        schedule = as_schedule(value)
        if schedule is not None:
            return schedule.words()
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
    if 99.5 <= abs(pct) < 100:  # never round a scaled-down value up to the full size: 0.999 is not "100%"
        return f"{math.floor(pct * 10) / 10:.1f}%" if abs(pct) < 99.95 else f"{pct:.2f}%"
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


# ---------------------------------------------------------------- the S3L check


def full_size_value(column: str, values: pd.Series) -> Any:
    """The full-size setting of a scaled knob among ``values``, or None."""
    values = values.dropna()
    if values.empty:
        return None
    kind = scaled_kind(column)
    if column == "resolution_schedule":
        single = [v for v in values.unique() if not v.staged]
        return max(single, key=lambda v: v.largest) if single else None
    if kind == "data_fraction" and (values.astype(float) == 1.0).any():
        return values[values.astype(float) == 1.0].iloc[0]
    return values.max()


# ---------------------------------------------------------------- cost model


def cost_model_error(df: pd.DataFrame) -> pd.DataFrame:
    """Finished trials with both costs: measured / predicted - 1 in ``error``."""
    done = finished(df, "train_pflops", "predicted_train_pflops")
    done = done[(done["predicted_train_pflops"] > 0) & (done["train_pflops"] > 0)]
    out = done[["trial_id", "predicted_train_pflops", "train_pflops"]].copy()
    out["error"] = out["train_pflops"] / out["predicted_train_pflops"] - 1.0
    return out
