"""The sweeper's command line: validate, estimate, --dry-run, status, report, budget, ASHA."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sweeper.cli import main
from tests.processes import dies_with_this_process
from tests.sweeper.conftest import TINY_TRIAL, write_study

REPO = Path(__file__).resolve().parents[2]
MALFORMED = sorted((REPO / "tests" / "sweeper" / "malformed").glob("*.yaml"))


def test_validate_accepts_every_shipped_study(capsys):
    studies = sorted((REPO / "studies").glob("*.yaml"))
    assert len(studies) >= 7
    assert main(["validate", *map(str, studies)]) == 0
    assert capsys.readouterr().out.count(": ok") == len(studies)


@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: p.stem)
def test_run_on_a_malformed_study_exits_2_and_writes_nothing(path: Path, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_estimate_and_dry_run_list_every_trial_with_predicted_cost(tmp_path: Path, capsys):
    path = write_study(tmp_path, grid=[8, 12, 16], seeds=[0, 1])
    assert main(["estimate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "total: 6 trials" in out and "PFLOPs" in out
    assert main(["run", str(path), "--dry-run"]) == 0
    assert "total: 6 trials" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_status_and_report_of_a_finished_study(tmp_path: Path, capsys, local_ray):
    path = write_study(tmp_path, name="shown", grid=[8])
    assert main(["run", str(path)]) == 0
    answer = (tmp_path / "reports" / "shown" / "summary.txt").read_text()
    out = capsys.readouterr().out
    assert out.endswith(answer)  # the run ends with the report's answer, as the report states it
    assert answer.splitlines()[1].startswith("Best configuration: ") and "No floors of its protocol were recorded for it" in answer  # TINY_TRIAL: floors off
    assert answer.splitlines()[0] in (tmp_path / "reports" / "shown" / "index.html").read_text()
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "state finished, 1 of 1 planned trials finished" in out
    header = out.splitlines()[1].split()
    assert header.index("knn_top1") + 1 == header.index("knn_pixels_top1") == header.index("knn_random_top1") - 1  # each figure beside its floors
    assert main(["status", str(tmp_path / "runs" / "shown")]) == 0
    out_dir = tmp_path / "elsewhere"
    (tmp_path / "runs" / "shown" / "results.parquet").unlink()  # tables are rebuilt from the records
    assert main(["report", str(tmp_path / "runs" / "shown"), "--out", str(out_dir)]) == 0
    assert (out_dir / "index.html").exists()
    assert capsys.readouterr().out.endswith(answer) and (out_dir / "summary.txt").read_text() == answer
    assert len(pd.read_parquet(tmp_path / "runs" / "shown" / "results.parquet")) == 1


def test_status_of_a_folder_that_is_no_store_is_one_line(tmp_path: Path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "is not a study store" in capsys.readouterr().err


@pytest.mark.slow
def test_budget_stops_new_trials_once_spent(tmp_path: Path, local_ray):
    path = write_study(tmp_path, name="budget", grid=[8, 10, 12], budget={"pflops": 1e-9}, max_concurrent=1)
    assert main(["run", str(path), "--no-report"]) == 0
    results = pd.read_parquet(tmp_path / "runs" / "budget" / "results.parquet")
    counts = results["status"].value_counts()
    # the ledger is written as each trial ends; a trial already launched by then may still finish
    assert counts.get("finished", 0) >= 1 and counts.get("skipped_budget", 0) >= 1
    assert counts.get("finished", 0) + counts.get("skipped_budget", 0) == 3


@pytest.mark.slow
def test_asha_stops_weak_trials_early(tmp_path: Path, local_ray):
    # One trial at a time: ASHA's decisions then depend only on the (seeded, CPU) metrics, not on timing.
    trial = {**TINY_TRIAL, "epochs": 4}
    path = write_study(tmp_path, name="asha", grid=[8, 10, 12, 14], trial=trial, objectives={"knn_top1": "max"},
                       scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2}, max_concurrent=1)  # fmt: skip
    assert main(["run", str(path), "--no-report"]) == 0
    results = pd.read_parquet(tmp_path / "runs" / "asha" / "results.parquet")
    assert len(results) == 4
    assert (results["status"] == "finished").sum() >= 1
    stopped = results[results["status"] == "stopped"]
    assert len(stopped) >= 1
    assert (stopped["epochs_done"] < 4).all() and (stopped["epochs_done"] >= 1).all()  # its curve up to the stop
    assert stopped["knn_val_top1"].notna().all() and (stopped["train_pflops"] > 0).all()
    assert stopped["knn_top1"].isna().all()  # a stopped trial never reached the test split


def test_report_of_a_folder_that_is_no_store_is_one_line(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a study store" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_status_of_a_killed_drivers_study_is_not_running(tmp_path: Path, capsys):
    import json
    import subprocess
    import sys

    root = tmp_path / "runs" / "killed"
    root.mkdir(parents=True)
    (root / "study.yaml").write_text("name: killed\nobjectives: {knn_top1: max}\n")
    (root / "state.json").write_text(json.dumps({"state": "running", "since": "2026-01-01T00:00:00+00:00"}))
    holder = subprocess.Popen(dies_with_this_process(
        [sys.executable, "-c", "import sys,time; from pathlib import Path; from sweeper.store.local import Store\n"
         "with Store(Path(sys.argv[1])).lock():\n    print('locked', flush=True); time.sleep(60)", str(root)]),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["status", str(root)]) == 0
        assert "state running," in capsys.readouterr().out
    finally:
        holder.kill()  # as a SIGKILLed driver: state.json still says running
        holder.wait()
    assert main(["status", str(root)]) == 0
    out = capsys.readouterr().out
    assert "state running," not in out and "not running" in out and "run` again" in out


@pytest.mark.parametrize("refusal", ["unwritable store", "store in use"])
def test_a_refused_run_is_one_line_and_starts_nothing(tmp_path: Path, capsys, ray_start_spy, refusal: str):
    """README: an unwritable or locked store is one line, exit 2, nothing started. Ray's start is
    replaced by a spy that refuses, so this test never starts Ray itself."""
    from sweeper.store.local import Store

    if refusal == "unwritable store":
        path = write_study(tmp_path, name="nowhere", storage="/proc/s3l-runs")
        assert main(["run", str(path), "--no-report"]) == 2
    else:
        path = write_study(tmp_path, name="busy")
        with Store(tmp_path / "runs" / "busy").lock():
            assert main(["run", str(path), "--no-report"]) == 2
    assert ray_start_spy == []
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
