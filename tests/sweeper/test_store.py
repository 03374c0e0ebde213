"""The study store: stable trial ids, atomic writes, and the one-driver lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from s3l_core.config import TrialConfig
from sweeper.store import Store, StoreError, trial_id


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
    store.write_record({"trial_id": "abc", "status": "finished"})
    assert store.finished_ids() == {"abc"}
    store.record_path("abc").write_text('{"trial_id": "abc", "stat')
    assert store.finished_ids() == set()


HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sweeper.store import Store
    with Store(Path(sys.argv[1])).lock():
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_second_driver_is_refused_and_a_dead_driver_holds_nothing(tmp_path: Path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
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
