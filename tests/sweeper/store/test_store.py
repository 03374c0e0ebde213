"""The study store: stable trial ids, atomic writes, and the one-driver lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from s3l_core.config import TrialConfig
from sweeper.store.local import Store, StoreError, trial_id
from tests.processes import dies_with_this_process


def config(**raw) -> dict:
    return TrialConfig.from_dict(raw).to_dict()


def test_trial_id_depends_on_what_is_computed_not_where():
    base = trial_id(config(resolution=14))
    assert base == trial_id(config(resolution=14))
    assert base == trial_id(config(resolution=14, device="cpu", data_dir="/elsewhere"))
    assert base != trial_id(config(resolution=16))
    assert base != trial_id(config(resolution=14, seed=1))
    assert len(base) == 12 and int(base, 16) >= 0


def test_damaged_record_counts_as_not_computed(tmp_path: Path):
    store = Store(tmp_path)
    store.write_record({"trial_id": "abc", "status": "finished", "config": config()})
    assert store.finished_ids() == {"abc"}
    store.record_path("abc").write_text('{"trial_id": "abc", "stat')
    assert store.finished_ids() == set()


HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sweeper.store.local import Store
    with Store(Path(sys.argv[1])).lock():
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_second_driver_is_refused_and_a_dead_driver_holds_nothing(tmp_path: Path):
    holder = subprocess.Popen(dies_with_this_process([sys.executable, "-c", HOLD, str(tmp_path)]), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match=f"in use by pid {holder.pid}"):
            with Store(tmp_path).lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    with Store(tmp_path).lock():  # SIGKILLed holder: the kernel released its lock
        pass


def test_unwritable_store_is_a_clear_error(tmp_path: Path):
    if os.geteuid() == 0:
        target = Path("/proc/s3l-store")  # not writable even for root
    else:
        tmp_path.chmod(0o500)
        target = tmp_path / "store"
    with pytest.raises(StoreError, match="cannot write to the study store"):
        with Store(target).lock():
            pass


@pytest.mark.parametrize(
    "content",
    ["[]", '"finished"', '{"trial_id": "abc"}', '{"trial_id": 5, "status": "finished", "config": {}}',
     '{"trial_id": "abc", "status": "finished", "config": []}', '{"trial_id": "abc", "status": "finished", "config": {}, "metrics": "0.9"}',
     '{"trial_id": "abc", "status": "finished", "config": {}, "epochs": {"1": 2}}', '{"trial_id": "xyz", "status": "finished", "config": {}}',
     '{"trial_id": "abc", "status": "done", "config": {}}'],
    ids=["list", "string", "no_status", "int_id", "config_list", "metrics_string", "epochs_mapping", "other_id", "unknown_status"],
)
def test_a_record_of_the_wrong_shape_is_skipped_with_a_warning_naming_it(tmp_path: Path, content: str, caplog):
    store = Store(tmp_path)
    store.write_record({"trial_id": "good", "status": "finished", "config": config()})
    store.record_path("abc").write_text(content)
    with caplog.at_level("WARNING", logger="sweeper.store.local"):
        assert [r["trial_id"] for r in store.records()] == ["good"]
    assert str(store.record_path("abc")) in caplog.text


def test_status_and_report_read_a_store_with_a_wrong_shaped_record(tmp_path: Path, capsys):
    from sweeper.cli import main

    root = tmp_path / "runs" / "shapes"
    store = Store(root)
    store.write_record({"trial_id": "good", "status": "finished", "config": config(), "metrics": {"knn_top1": 0.5}})
    store.record_path("bad").write_text('{"trial_id": "bad", "status": "finished", "config": 7, "metrics": []}')
    (root / "study.yaml").write_text(f"name: shapes\nreport: {tmp_path / 'reports'}\nobjectives: {{knn_top1: max}}\n")
    assert main(["status", str(root)]) == 0
    assert "state unknown (no state.json), 1 trial finished" in capsys.readouterr().out


def test_lock_never_follows_a_planted_symlink(tmp_path: Path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    root = tmp_path / "store"
    root.mkdir()
    (root / ".lock").symlink_to(victim)
    with pytest.raises(StoreError, match="is a symbolic link"):
        with Store(root).lock():
            pass
    assert victim.read_text() == "precious"


def test_is_locked_tells_a_live_driver_from_a_killed_one(tmp_path: Path):
    assert not Store(tmp_path).is_locked()  # no lock file yet
    holder = subprocess.Popen(dies_with_this_process([sys.executable, "-c", HOLD, str(tmp_path)]), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert Store(tmp_path).is_locked()
    finally:
        holder.kill()
        holder.wait()
    assert not Store(tmp_path).is_locked()


@pytest.mark.parametrize("folder", ["trials", "ray"])
def test_a_symlinked_folder_inside_the_store_is_refused(tmp_path: Path, folder: str):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "store"
    root.mkdir()
    (root / folder).symlink_to(elsewhere)
    with pytest.raises(StoreError, match=f"{folder} is a symbolic link"):
        with Store(root).lock():
            pass
    assert list(elsewhere.iterdir()) == []


def test_only_finished_records_count_as_finished(tmp_path: Path):
    """Failed, stopped and budget-skipped trials run again: they are never reused."""
    store = Store(tmp_path)
    for tid, status in [("aaa", "finished"), ("bbb", "failed"), ("ccc", "stopped"), ("ddd", "skipped_budget")]:
        store.write_record({"trial_id": tid, "status": status, "config": config(seed=len(tid))})
    assert store.finished_ids() == {"aaa"}


@pytest.mark.parametrize("fault", ["fsync", "replace"])
def test_a_record_write_that_fails_to_sync_or_rename_keeps_the_old_record(tmp_path: Path, monkeypatch, fault: str):
    import errno

    store = Store(tmp_path)
    store.write_record({"trial_id": "abc", "status": "failed", "config": config()})
    before = store.record_path("abc").read_bytes()

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, fault, full_disk)
    with pytest.raises(OSError):
        store.write_record({"trial_id": "abc", "status": "finished", "config": config()})
    monkeypatch.undo()
    assert store.record_path("abc").read_bytes() == before
    assert [p.name for p in store.trials_dir.iterdir()] == ["abc.json"]  # no temp file left


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("holds", ["another study's files", "a store of another study", "notes"])
def test_run_refuses_a_folder_that_is_not_this_studys_store_and_writes_nothing_into_it(tmp_path: Path, capsys, ray_start_spy, holds: str):
    """`storage:` pointed at a folder holding another study's study.yaml, a results.csv and notes
    replaced that study.yaml and wrote state.json within a minute (issue 25); now one line, exit 2."""
    from tests.sweeper.conftest import write_study

    from sweeper.cli import main
    from sweeper.store.local import MARKER_NAME

    folder = tmp_path / "runs" / "mine"
    folder.mkdir(parents=True)
    if holds == "another study's files":
        (folder / "study.yaml").write_text("name: theirs\ndataset: digits\n")
        (folder / "results.csv").write_text("trial_id,knn_top1\nabc,0.9\n")
        (folder / "notes.txt").write_text("do not lose")
        expected = "holds a study.yaml of another study ('theirs')"
    elif holds == "a store of another study":
        (folder / MARKER_NAME).write_text('{"format": 1, "study": "theirs"}')
        (folder / "trials").mkdir()
        expected = "is the store of another study ('theirs')"
    else:
        (folder / "notes.txt").write_text("do not lose")
        expected = "is not empty and is not a study store (it holds notes.txt)"
    before, names = _snapshot(folder), sorted(p.name for p in folder.iterdir())
    path = write_study(tmp_path, name="mine")
    assert main(["run", str(path), "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and str(folder) in err[0], err
    assert _snapshot(folder) == before and sorted(p.name for p in folder.iterdir()) == names  # not even a .lock
    assert ray_start_spy == []
    assert main(["run", str(path), "--dry-run"]) == 2  # the dry run says the same
    assert expected in capsys.readouterr().err


def test_a_claimed_store_is_marked_as_its_studys_and_a_0_1_0_store_is_adopted(tmp_path: Path):
    import shutil

    from sweeper.store.claim import claimed_store
    from sweeper.store.local import MARKER_NAME, identity_problem

    fresh = Store(tmp_path / "fresh")
    with claimed_store(fresh, None, "fresh"):
        pass
    assert json.loads((fresh.root / MARKER_NAME).read_text()) == {"format": 1, "study": "fresh"}
    assert identity_problem(fresh, "fresh") is None and "another study ('fresh')" in identity_problem(fresh, "other")

    old = tmp_path / "upgrade-v1"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "store-0.1.0" / "upgrade-v1", old)
    assert identity_problem(Store(old), "upgrade-v1") is None  # no marker: a store written by 0.1.0
    assert "another study ('upgrade-v1')" in identity_problem(Store(old), "other")
    with claimed_store(Store(old), None, "upgrade-v1"):
        pass
    assert json.loads((old / MARKER_NAME).read_text())["study"] == "upgrade-v1"
