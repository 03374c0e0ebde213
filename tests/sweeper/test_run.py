"""`run` end to end on a real local Ray: results, reuse, extension, a killed driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sweeper.cli import main
from sweeper.tune.runner import run_study
from sweeper.study.load import load_study
from tests.processes import dies_with_this_process
from tests.sweeper.conftest import TINY_TRIAL, write_study

pytestmark = pytest.mark.slow


def record_mtimes(store: Path) -> dict[str, float]:
    return {p.stem: p.stat().st_mtime_ns for p in (store / "trials").glob("*.json")}


def test_tiny_study_end_to_end_then_extension_runs_only_new_points(tmp_path: Path, local_ray, monkeypatch):
    monkeypatch.setenv("S3L_TEST_SECRET_TOKEN", "hunter2-do-not-record")
    study = load_study(write_study(tmp_path, grid=[8, 12]))
    summary = run_study(study)
    assert (summary.total, summary.launched, summary.finished, summary.failed) == (2, 2, 2, 0)
    store = tmp_path / "runs" / "tiny"
    results = pd.read_parquet(store / "results.parquet")
    assert sorted(results["resolution"]) == [8, 12]
    assert (results["status"] == "finished").all()
    assert results["knn_top1"].between(0.1, 1).all() and (results["train_pflops"] > 0).all()
    assert (results["predicted_train_pflops"] > 0).all()
    epochs = pd.read_parquet(store / "epochs.parquet")
    assert len(epochs) == 4 and set(epochs["trial_id"]) == set(results["trial_id"])
    assert (store / "results.csv").exists() and (store / "study.yaml").exists()
    provenance = json.loads((store / "provenance.json").read_text())
    assert provenance["torch"] and provenance["ray"]
    assert "hunter2" not in (store / "provenance.json").read_text()  # no environment variables recorded
    assert (tmp_path / "reports" / "tiny" / "index.html").exists()
    # keep: encoder (the default): each finished trial leaves its encoder's weights, not the whole checkpoint
    assert not list(store.rglob("checkpoint.pt"))
    weights = sorted(store.rglob("encoder.pt"))
    assert len(weights) == 2
    import torch

    from s3l_core.backbone import build_resnet

    build_resnet(10, 0.125, 4, 1, "cifar").load_state_dict(torch.load(weights[0], weights_only=True))  # strict: every weight

    before = record_mtimes(store)
    extended = load_study(write_study(tmp_path, grid=[8, 12, 16], seeds=[0]))
    summary = run_study(extended)
    assert (summary.total, summary.reused, summary.launched) == (3, 2, 1)
    after = record_mtimes(store)
    assert {k: after[k] for k in before} == before  # finished trials untouched
    results = pd.read_parquet(store / "results.parquet")
    assert sorted(results["resolution"]) == [8, 12, 16] and results["trial_id"].is_unique

    summary = run_study(extended)  # everything done: nothing launches
    assert summary.launched == 0 and record_mtimes(store) == after


def test_cli_refuses_gpu_trials_on_a_cpu_only_cluster(tmp_path: Path, capsys):
    path = write_study(tmp_path, name="needs_gpu", resources={"cpu": 1, "gpu": 0.25})
    code = main(["run", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "0.25 GPU" in err and "0 GPU" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "reports").exists()


def test_killed_driver_then_run_again_finishes_without_retraining(tmp_path: Path):
    trial = {"epochs": 4}
    path = write_study(tmp_path, name="killed", grid=[8, 10, 12], trial={**__import__("tests.sweeper.conftest", fromlist=["TINY_TRIAL"]).TINY_TRIAL, **trial}, max_concurrent=1)
    store = tmp_path / "runs" / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(dies_with_this_process([sys.executable, "-m", "sweeper", "run", str(path), "--no-report"]), env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not list((store / "trials").glob("*.json")):
            time.sleep(0.5)
        assert list((store / "trials").glob("*.json")), "no trial finished before the deadline"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the embedded Ray it started
        driver.wait()
    first = record_mtimes(store)
    assert 1 <= len(first) < 3
    done = subprocess.run([sys.executable, "-m", "sweeper", "run", str(path), "--no-report"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    after = record_mtimes(store)
    assert len(after) == 3
    assert {k: after[k] for k in first} == first  # no finished trial was trained again
    results = pd.read_parquet(store / "results.parquet")
    assert len(results) == 3 and results["trial_id"].is_unique and (results["status"] == "finished").all()


def test_optuna_nsga2_study_runs_and_continues_without_rerunning(tmp_path: Path, local_ray):
    space = {"backbone.width": {"uniform": [0.0625, 0.125]}, "resolution": {"choice": [8, [{"resolution": 8, "epochs": 1}, {"resolution": 10, "epochs": 1}]]}}
    path = write_study(tmp_path, name="nsga", space=space, search={"algorithm": "optuna-nsga2", "num_samples": 2, "seed": 3})
    summary = run_study(load_study(path), report=False)
    assert (summary.launched, summary.finished, summary.failed) == (2, 2, 0)
    store = tmp_path / "runs" / "nsga"
    assert (store / "optuna.db").exists()
    first = record_mtimes(store)

    path = write_study(tmp_path, name="nsga", space=space, search={"algorithm": "optuna-nsga2", "num_samples": 3, "seed": 3})
    summary = run_study(load_study(path), report=False)
    assert (summary.reused, summary.launched) == (2, 1)
    after = record_mtimes(store)
    assert {k: after[k] for k in first} == first
    import optuna

    trials = optuna.load_study(study_name="nsga", storage=f"sqlite:///{store / 'optuna.db'}").get_trials()
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) >= 3
    results = pd.read_parquet(store / "results.parquet")
    assert results["backbone.width"].between(0.0625, 0.125).all()


def test_a_steps_schedule_study_on_the_linear_probe_is_gated_by_linear_probe_floors(tmp_path: Path, local_ray, capsys):
    """S3L's recipe in optimiser steps (8 px then 12 px, 4 steps each) against 12 px for 8 steps,
    judged on the linear probe: `run`, `status` and `report` all work, the trials record the
    linear probe's own floors, and the report states and gates on them (not kNN's)."""
    trial = {**{k: v for k, v in TINY_TRIAL.items() if k != "epochs"}, "steps": 8,
             "eval": {**TINY_TRIAL["eval"], "linear_probe": True, "floors": True, "resolution": 12}}
    space = {"resolution": {"grid": [12, [{"resolution": 8, "steps": 4}, {"resolution": 12, "steps": 4}]]}}
    path = write_study(tmp_path, name="steps", space=space, trial=trial,
                       objectives={"linear_top1": "max", "train_pflops": "min"})
    assert main(["run", str(path)]) == 0
    store = tmp_path / "runs" / "steps"
    results = pd.read_parquet(store / "results.parquet")
    assert sorted(results["resolution_schedule"]) == ["12", "8x4s,12x4s"]
    assert list(results["resolution_stages"].sort_values()) == [1, 2]
    for column in ("linear_pixels_top1", "linear_random_top1", "linear_val_pixels_top1", "linear_val_random_top1"):
        assert results[column].between(0.1, 1).all(), column
    assert (results["linear_pixels_top1"] != results["knn_pixels_top1"]).all()
    capsys.readouterr()
    assert main(["status", str(store)]) == 0
    assert "2" in capsys.readouterr().out
    assert main(["report", str(store)]) == 0
    summary = (tmp_path / "reports" / "steps" / "summary.txt").read_text()
    assert "raw-pixel linear top-1" in summary and "raw-pixel kNN" not in summary
    assert "Pre-training did not beat raw pixels here" in summary  # 8 optimiser steps learn less than pixels hold
    pairs = pd.read_csv(tmp_path / "reports" / "steps" / "s3l_pairs.csv")
    assert list(pairs["pairing"]) == ["equal steps"] and list(pairs["value"]) == ["8x4s,12x4s"]  # 4 + 4 steps against 8
    assert list(pairs["floor_missed"]) == ["linear_pixels_top1"]
