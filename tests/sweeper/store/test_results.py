"""Trial records -> result tables."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from s3l_core.config import TrialConfig
from sweeper.report.snapshot import normalize_results
from sweeper.study.resolution_schedule import ResolutionSchedule, schedule_label
from sweeper.store.results import results_frame, write_tables
from sweeper.store.local import Store


def record(tid: str, status: str = "finished", **config) -> dict:
    finished = status == "finished"
    return {
        "trial_id": tid,
        "status": status,
        "error": None if finished else "boom",
        "config": TrialConfig.from_dict(config).to_dict(),
        "metrics": {"knn_top1": 0.8, "wall_s": 7200.0, "train_pflops": 0.5, "device": "cpu"} if finished else {},
        "epochs": [{"epoch": 1, "resolution": 14, "loss": 5.0, "lr": 0.1, "knn_val_top1": None, "train_pflops_cum": 0.25, "wall_s_cum": 1.0, "img_per_s": 9.0},
                   {"epoch": 2, "resolution": 14, "loss": 4.0, "lr": 0.0, "knn_val_top1": 0.8, "train_pflops_cum": 0.5, "wall_s_cum": 2.0, "img_per_s": 9.0}]
        if finished else [],
        "gpu_fraction": 0.25,
        "node": "n1",
        "predicted_train_pflops": 0.4,
    }  # fmt: skip


def test_schedule_labels():
    assert schedule_label(28) == "28"
    assert schedule_label([{"resolution": 14, "epochs": 8}, {"resolution": 28, "epochs": 2}]) == "14x8,28x2"


def test_rows_flatten_the_config_and_charge_gpu_hours_by_fraction_held():
    stages = [{"resolution": 14, "epochs": 8}, {"resolution": 28, "epochs": 2}]
    frame = results_frame([record("a", resolution=stages, backbone={"width": 0.5}), record("b", status="failed")])
    a, b = frame.set_index("trial_id").loc["a"], frame.set_index("trial_id").loc["b"]
    assert a["resolution"] == 28 and a["resolution_schedule"] == "14x8,28x2" and a["backbone.width"] == 0.5
    assert a["gpu_hours"] == 0.5  # 2 h wall x 0.25 GPU
    assert a["epochs_done"] == 2 and b["epochs_done"] == 0
    assert b["error"] == "boom" and math.isnan(b["knn_top1"]) and math.isnan(b["gpu_hours"])


def test_write_tables_rebuilds_every_table_from_the_records(tmp_path: Path):
    store = Store(tmp_path)
    store.write_record(record("a", resolution=14))
    store.write_record(record("b", status="failed", resolution=28))
    results = write_tables(store)
    assert sorted(results["trial_id"]) == ["a", "b"]
    assert pd.read_csv(tmp_path / "results.csv")["status"].tolist() == results["status"].tolist()
    epochs = pd.read_parquet(tmp_path / "epochs.parquet")
    assert epochs["trial_id"].tolist() == ["a", "a"] and math.isnan(epochs["knn_val_top1"][0]) and epochs["knn_val_top1"][1] == 0.8


@pytest.mark.parametrize("fault", ["fsync", "replace"])
def test_tables_that_fail_to_sync_or_rename_keep_the_old_tables(tmp_path: Path, monkeypatch, fault: str):
    import errno
    import os

    store = Store(tmp_path)
    store.write_record(record("a", resolution=14))
    write_tables(store)
    tables = ("results.parquet", "results.csv", "epochs.parquet")
    before = {name: (tmp_path / name).read_bytes() for name in tables}
    store.write_record(record("b", status="failed", resolution=28))

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, fault, full_disk)
    with pytest.raises(OSError):
        write_tables(store)
    monkeypatch.undo()
    assert {name: (tmp_path / name).read_bytes() for name in tables} == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_schedule_in_steps_makes_its_tables_and_its_wording(tmp_path: Path):
    """`trial: {steps: 20}` with stages given as fractions: the tables read `s['epochs']` of every
    stage and failed with KeyError at the end of run, in status and in report (issue 24)."""
    from sweeper.report.summary import describe_value

    config = TrialConfig.from_dict({"steps": 20, "resolution": [{"resolution": 8, "fraction": 0.5}, {"resolution": 14, "fraction": 0.5}]})
    store = Store(tmp_path)
    store.write_record({"trial_id": "a", "status": "finished", "config": config.to_dict(), "metrics": {"knn_top1": 0.5}})
    results = write_tables(store)
    assert results["resolution_schedule"].tolist() == ["8x10s,14x10s"] and results["resolution"].tolist() == [14]
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert list(table["resolution_stage_px"].iloc[0]) == [8, 14] and list(table["resolution_stage_length"].iloc[0]) == [10, 10]
    table["resolution_schedule"] = "a label nobody parses"  # the report reads the stage columns, never the label
    schedule = normalize_results(table)["resolution_schedule"].iloc[0]
    assert schedule == ResolutionSchedule((8, 14), (10, 10), "steps")
    assert describe_value("resolution_schedule", schedule) == "8 px for 10 steps then 14 px for 10"
