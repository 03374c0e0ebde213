"""The study store `runs/<name>/`: the single source of truth for what has been computed.

Layout:
    study.yaml, provenance.json, state.json   the resolved study, where it ran, how it ended
    trials/<trial_id>.json                    one record per trial (finished or failed)
    ray/<attempt>/<trial_id>/checkpoint_*/    Ray's per-epoch checkpoints
    results.parquet|.csv, epochs.parquet      tables rebuilt from the records
    optuna.db                                 Optuna's study (optuna-dashboard sqlite:///optuna.db)
    .lock                                     held (flock) by the one driver running the study

A trial's id hashes its resolved config and the results version, so a finished record
is reused whenever the same trial is asked for again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import s3l_core
from s3l_core.atomic import write_atomic

# Keys that change where or how fast a trial runs, not what it computes.
UNHASHED_KEYS = ("device", "data_dir", "download", "compile")
TRIAL_STATUSES = ("finished", "failed", "skipped_budget")


class StoreError(RuntimeError):
    """The store cannot be used: locked by another driver, unwritable, or damaged."""


def trial_id(trial_config: dict[str, Any]) -> str:
    """Stable 12-hex id of a resolved trial config (as `TrialConfig.to_dict()` gives it)."""
    identity = {k: v for k, v in trial_config.items() if k not in UNHASHED_KEYS}
    identity["results_version"] = s3l_core.RESULTS_VERSION
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=1, sort_keys=True, default=str, allow_nan=True))


class Store:
    def __init__(self, root: Path):
        self.root = root
        self.trials_dir = root / "trials"
        self.ray_dir = root / "ray"

    def record_path(self, tid: str) -> Path:
        return self.trials_dir / f"{tid}.json"

    def write_record(self, record: dict[str, Any]) -> None:
        write_json(self.record_path(record["trial_id"]), record)

    def read_record(self, tid: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.record_path(tid).read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # a damaged record counts as not computed: the trial runs again

    def records(self) -> Iterator[dict[str, Any]]:
        """Every readable trial record, streamed (the driver never holds them all for long)."""
        if not self.trials_dir.exists():
            return
        for path in sorted(self.trials_dir.glob("*.json")):
            record = self.read_record(path.stem)
            if record is not None:
                yield record

    def finished_ids(self) -> set[str]:
        return {r["trial_id"] for r in self.records() if r.get("status") == "finished"}

    def latest_checkpoint_dirs(self, tid: str) -> list[Path]:
        """Ray checkpoint dirs of this trial from every earlier attempt, newest first.

        Ray numbers checkpoints afresh in each attempt, so order by time written.
        """
        found = list(self.ray_dir.glob(f"*/{tid}/checkpoint_*"))
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the study's lock; a second driver is refused. The kernel drops a dead process's lock."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / ".lock", "a+")
        except OSError as exc:
            raise StoreError(f"cannot write to the study store {self.root}: {exc.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StoreError(f"study store {self.root} is in use by {holder}; wait for it or stop it first") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {os.uname().nodename}")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
