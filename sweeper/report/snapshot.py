"""Reading a study store (``runs/<name>/``) and writing report files atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from s3l_core.floors import FLOOR_METRICS
from sweeper.study.resolution_schedule import STAGE_COLUMNS, ResolutionSchedule

# test-split numbers (stated), validation-split numbers (select), floors; older stores lack some: NaN
ACCURACY_COLUMNS = (
    "knn_top1",
    "linear_top1",
    "finetune_top1",
    "knn_val_top1",
    "linear_val_top1",
    "finetune_val_top1",
    "knn_top1_best",
    *FLOOR_METRICS,
)
EVALUATION_COLUMNS = ("test_size", "val_size", "feature_rank", "steps", "steps_config")
COST_COLUMNS = (
    "train_pflops",
    "eval_pflops",
    "total_pflops",
    "predicted_train_pflops",
    "wall_s",
    "train_s",
    "gpu_hours",
    "img_per_s",
    "gpu_fraction",
    "peak_mem_mb",
)
# statuses that mean "not done yet": a table holding them is partial
UNFINISHED = ("running", "pending")


@dataclass(frozen=True)
class StoreSnapshot:
    """Everything the report reads from one study store."""

    path: Path
    results: pd.DataFrame
    epochs: pd.DataFrame
    study: dict[str, Any]
    provenance: dict[str, Any]
    state: dict[str, Any] | None
    problems: tuple[str, ...] = ()  # files that were missing or unreadable


def load_store(store_dir: Path) -> StoreSnapshot:
    store_dir = Path(store_dir)
    problems: list[str] = []
    results = _read_parquet(store_dir / "results.parquet", problems)
    epochs = _read_parquet(store_dir / "epochs.parquet", problems, required=False)
    study = _read_mapping(store_dir / "study.yaml", yaml.safe_load, problems)
    provenance = _read_mapping(store_dir / "provenance.json", json.loads, problems)
    state_path = store_dir / "state.json"
    state = _read_mapping(state_path, json.loads, problems) if state_path.exists() else None
    return StoreSnapshot(
        path=store_dir,
        results=normalize_results(results),
        epochs=normalize_epochs(epochs),
        study=study,
        provenance=provenance,
        state=state,
        problems=tuple(problems),
    )


def _read_parquet(path: Path, problems: list[str], required: bool = True) -> pd.DataFrame:
    if not path.exists():
        if required:
            problems.append(f"{path.name} not found")
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # a half-written or corrupt file must not stop the report
        problems.append(f"{path.name} unreadable: {type(exc).__name__}: {exc}")
        return pd.DataFrame()


def _read_mapping(path: Path, parse, problems: list[str]) -> dict[str, Any]:
    if not path.exists():
        problems.append(f"{path.name} not found")
        return {}
    try:
        value = parse(path.read_text(encoding="utf-8"))
    except Exception as exc:
        problems.append(f"{path.name} unreadable: {type(exc).__name__}: {exc}")
        return {}
    if not isinstance(value, dict):
        problems.append(f"{path.name} is not a mapping")
        return {}
    return value


def normalize_results(df: pd.DataFrame) -> pd.DataFrame:
    """Add any missing contract column (NaN / empty) so later code need not check."""
    df = df.copy()
    n = len(df)
    if "trial_id" not in df:
        df["trial_id"] = [f"row{i}" for i in range(n)]
    df["trial_id"] = df["trial_id"].astype(str)
    if "status" not in df:
        df["status"] = "finished"
    df["status"] = df["status"].fillna("unknown").astype(str).str.lower()
    for col in (*ACCURACY_COLUMNS, *EVALUATION_COLUMNS, *COST_COLUMNS):
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else np.nan
    if "error" not in df:
        df["error"] = None
    if "resumed_from_corrupt" not in df:
        df["resumed_from_corrupt"] = False
    df["resumed_from_corrupt"] = df["resumed_from_corrupt"].fillna(False).astype(bool)
    if "resolution_schedule" in df:
        df["resolution_schedule"] = _schedules(df)
    return df.reset_index(drop=True)


def _schedules(df: pd.DataFrame) -> list[ResolutionSchedule | None]:
    """The resolution knob as structured schedules, from the stage columns; tables written before
    those columns existed carry only the label, read once here."""
    if set(STAGE_COLUMNS) <= set(df.columns):
        return [ResolutionSchedule.from_columns(*cells) for cells in df[list(STAGE_COLUMNS)].itertuples(index=False)]
    return [None if pd.isna(v) else ResolutionSchedule.from_label(v) for v in df["resolution_schedule"]]


EPOCH_COLUMNS = ("trial_id", "epoch", "step", "knn_val_top1", "knn_top1", "loss", "train_pflops_cum", "wall_s_cum",
                 "resolution")


def normalize_epochs(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in EPOCH_COLUMNS:
        if col not in df:
            df[col] = np.nan if col != "trial_id" else pd.Series([], dtype=str)
    df["trial_id"] = df["trial_id"].astype(str)
    return df


def curve_column(epochs: pd.DataFrame) -> str:
    """The per-epoch accuracy learning curves draw: validation kNN, or kNN in older stores."""
    return "knn_val_top1" if epochs["knn_val_top1"].notna().any() else "knn_top1"


