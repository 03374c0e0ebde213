"""Trial records -> the study's result tables (`results.parquet|.csv`, `epochs.parquet`)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from s3l_core.floors import FLOOR_METRICS
from sweeper.study.resolution_schedule import ResolutionSchedule
from sweeper.store.local import Store

if TYPE_CHECKING:
    from sweeper.store.object_store import ObjectStore

METRIC_COLUMNS = (
    "knn_top1", "knn_val_top1", "knn_top1_best", "linear_top1", "linear_val_top1", "finetune_top1", "finetune_val_top1",
    *FLOOR_METRICS, "feature_rank", "test_size", "val_size", "pretrain_images", "steps",
    "train_pflops", "eval_pflops", "total_pflops", "wall_s", "train_s", "img_per_s", "peak_mem_mb",
)  # fmt: skip
EPOCH_COLUMNS = ("trial_id", "epoch", "step", "resolution", "loss", "lr", "knn_val_top1", "train_pflops_cum", "wall_s_cum", "img_per_s")


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def result_row(record: dict[str, Any]) -> dict[str, Any]:
    config = dict(record["config"])
    resolution = config.pop("resolution")
    row: dict[str, Any] = {"trial_id": record["trial_id"], "status": record["status"], "error": record.get("error")}
    row.update(flatten(config))
    row["steps_config"] = row.pop("steps", None)  # the run-length knob; `steps` is what was trained
    schedule = ResolutionSchedule.from_config(resolution)
    row["resolution"] = schedule.largest
    row["resolution_schedule"] = schedule.label
    row["resolution_stages"] = len(schedule.resolutions)  # > 1: a schedule, not a full-size point
    row.update(schedule.columns())
    metrics = record.get("metrics") or {}
    for column in METRIC_COLUMNS:
        row[column] = metrics.get(column)
    row["device"] = metrics.get("device")
    gpu_fraction = float(record.get("gpu_fraction", 0.0))
    row["gpu_fraction"] = gpu_fraction
    # GPU-hours held: time x the fraction of a GPU this trial was granted (0 on CPU-only trials)
    row["gpu_hours"] = (metrics["wall_s"] / 3600.0 * gpu_fraction) if metrics.get("wall_s") is not None else None
    row["node"] = record.get("node")
    row["epochs_done"] = len(record.get("epochs") or [])
    row["resumed_from_corrupt"] = bool(record.get("resumed_from_corrupt", False))
    row["predicted_train_pflops"] = record.get("predicted_train_pflops")
    return row


def results_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([result_row(r) for r in records])
    for column in METRIC_COLUMNS + ("gpu_hours", "predicted_train_pflops"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def epochs_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    rows = [{"trial_id": r["trial_id"], **e} for r in records for e in (r.get("epochs") or [])]
    frame = pd.DataFrame(rows, columns=list(EPOCH_COLUMNS))
    frame["knn_val_top1"] = pd.to_numeric(frame["knn_val_top1"], errors="coerce").astype("float64")
    return frame


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_tables(store: "Store | ObjectStore") -> pd.DataFrame:
    """Rebuild the result tables from every record in the store, atomically; return results."""
    records = list(store.records())
    results = results_frame(records)
    store.put("results.parquet", _parquet_bytes(results))  # each one file renamed into place, or one object
    store.put("results.csv", results.to_csv(index=False))
    store.put("epochs.parquet", _parquet_bytes(epochs_frame(records)))
    return results

