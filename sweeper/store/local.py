"""The study store `runs/<name>/`: the single source of truth for what has been computed.

Layout:
    study.yaml, provenance.json, state.json   the resolved study, where it ran, how it ended
    trials/<trial_id>.json                    one record per trial (finished or failed)
    ray/<attempt>/<trial_id>/checkpoint_*/    Ray's per-epoch checkpoints
    results.parquet|.csv, epochs.parquet      tables rebuilt from the records
    optuna.db                                 Optuna's study (optuna-dashboard sqlite:///optuna.db)
    .lock                                     held (flock) by the one driver running the study
    .s3l-store.json                           {"format": 1, "study": <name>}: this folder is that study's store

A trial's id hashes what its resolved config computes and the results version
(`sweeper/store/trial_identity.py`), so a finished record is reused whenever the same trial is asked for again. `storage:` may also be an object-store
URI (`s3://bucket/prefix`): `sweeper.store.object_store.open_store` then gives an `ObjectStore`
with the same interface, whose lock is a lease object (`sweeper/store/lease.py`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from s3l_core.atomic import write_atomic
from sweeper.store.record import TRIAL_STATUSES, record_problem  # noqa: F401 (TRIAL_STATUSES: the store's vocabulary)
from sweeper.store.trial_identity import trial_id  # noqa: F401 (the store names its records by it)
from sweeper.store.uris import is_uri, join_uri, local_path_of

if TYPE_CHECKING:
    from sweeper.study.load import Study

LOCK_NAME = ".lock"
STATE_NAME = "state.json"
# Says "this folder is the store of study <name>", so `run` never adopts a folder that is not one.
MARKER_NAME = ".s3l-store.json"
STORE_FORMAT = 1
# What a refused or aborted run may leave in a folder that is otherwise not a store yet.
LEFT_BY_A_REFUSED_RUN = (LOCK_NAME, ".lease")

log = logging.getLogger("sweeper.store.local")


class StoreError(RuntimeError):
    """The store cannot be used: locked by another driver, unwritable, or damaged."""


def json_text(value: Any) -> str:
    """How the store writes JSON, on a file system and on an object store alike."""
    return json.dumps(value, indent=1, sort_keys=True, default=str, allow_nan=True)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json_text(value))


def parse_record(data: str | bytes, tid: str, where: str) -> dict[str, Any] | None:
    """The trial record stored as `data`, or None when it is damaged or any field has the wrong type."""
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged record counts as not computed: the trial runs again
    except RecursionError:
        log.warning("skipping trial record %s: nested too deeply", where)
        return None
    problem = record_problem(record, tid)
    if problem:
        log.warning("skipping trial record %s: %s", where, problem)
        return None  # like a damaged record: the trial runs again
    return record


def finished_ids(records: Iterable[dict[str, Any]]) -> set[str]:
    return {r["trial_id"] for r in records if r.get("status") == "finished"}


class Store:
    """A study store in a local (or NFS-mounted) folder: atomic renames, and `flock` as its lock."""

    remote = False

    def __init__(self, root: Path):
        self.root = root
        self.trials_dir = root / "trials"
        self.ray_dir = root / "ray"

    # The interface `ObjectStore` shares: files by name under the store.
    @property
    def location(self) -> str:
        return str(self.root)

    def join(self, name: str) -> str:
        return str(self.root / name)

    def __str__(self) -> str:
        return self.location

    def put(self, name: str, data: bytes | str) -> None:
        write_atomic(self.root / name, data)

    def put_json(self, name: str, value: Any) -> None:
        write_json(self.root / name, value)

    def get_text(self, name: str) -> str | None:
        try:
            return (self.root / name).read_text()
        except FileNotFoundError:
            return None

    def has(self, name: str) -> bool:
        return (self.root / name).exists()

    def entries(self) -> list[str]:
        """The names at the store's top level (none when the folder does not exist)."""
        try:
            return sorted(p.name for p in self.root.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def ray_storage(self) -> tuple[str, None]:
        """(`storage_path`, `storage_filesystem`) for Ray Tune's `RunConfig`."""
        return str(self.ray_dir), None

    def check_writable(self, what: str = "the study store") -> None:
        check_writable(self.root, what)

    def check_fence(self) -> None:
        """Nothing to check: the `flock` stays with its driver even while it is paused (an object
        store's lease can be taken from a paused driver, whose writes are then fenced off)."""

    def checkpoint_copies(self, tid: str) -> Iterator[Path]:
        """This trial's checkpoint folders from earlier attempts, newest first (local: the folders themselves)."""
        yield from self.latest_checkpoint_dirs(tid)

    def record_path(self, tid: str) -> Path:
        return self.trials_dir / f"{tid}.json"

    def write_record(self, record: dict[str, Any]) -> None:
        write_json(self.record_path(record["trial_id"]), record)

    def read_record(self, tid: str) -> dict[str, Any] | None:
        path = self.record_path(tid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return parse_record(data, tid, str(path))

    def records(self) -> Iterator[dict[str, Any]]:
        """Every readable trial record, streamed (the driver never holds them all for long)."""
        if not self.trials_dir.exists():
            return
        for path in sorted(self.trials_dir.glob("*.json")):
            record = self.read_record(path.stem)
            if record is not None:
                yield record

    def finished_ids(self) -> set[str]:
        return finished_ids(self.records())

    def latest_checkpoint_dirs(self, tid: str) -> list[Path]:
        """Ray checkpoint dirs of this trial from every earlier attempt, newest first.

        Ray numbers checkpoints afresh in each attempt, so order by time written.
        """
        found = list(self.ray_dir.glob(f"*/{tid}/checkpoint_*"))
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def _open_lock_file(self, flags: int) -> int:
        """The lock file's descriptor, never through a symlink (a planted link must not make the
        driver truncate a file elsewhere)."""
        try:
            return os.open(self.root / LOCK_NAME, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"{self.root / LOCK_NAME} is a symbolic link; remove it (the store's files are never written through links)") from None
            raise

    def state(self) -> str:
        """The study's state from `state.json`, corrected by the lock: a "running" study whose
        lock nobody holds had its driver killed."""
        try:
            saved = json.loads((self.root / STATE_NAME).read_text())
            state = str(saved["state"])
        except FileNotFoundError:
            return "unknown (no state.json)"
        except (OSError, ValueError, TypeError, KeyError):
            return "unknown (state.json is unreadable)"
        if state == "running" and not self.is_locked():
            return f"not running (its driver stopped without finishing, last started {saved.get('since', '?')}); `run` again to resume"
        return state

    def _refuse_linked_folders(self) -> None:
        """Records and checkpoints are written into these folders: a planted link must not send them elsewhere."""
        for folder in (self.trials_dir, self.ray_dir):
            if folder.is_symlink():
                raise StoreError(f"{folder} is a symbolic link; remove it (the store's files are never written through links)")

    def is_locked(self) -> bool:
        """Whether a driver holds the study's lock now (a killed driver holds nothing)."""
        try:
            fd = self._open_lock_file(os.O_RDONLY)
        except (FileNotFoundError, StoreError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the study's lock; a second driver is refused. The kernel drops a dead process's lock."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = self._open_lock_file(os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise StoreError(f"cannot write to the study store {self.root}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreError(f"study store {self.root} is in use by {holder}; wait for it or stop it first") from None
        try:
            self._refuse_linked_folders()
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)



def marker(name: str) -> dict[str, Any]:
    return {"format": STORE_FORMAT, "study": name}


def identity_problem(store: "Store | Any", name: str) -> str | None:
    """Why `store` must not be used as the store of study `name`, or None: an empty or new folder,
    this study's store, or a store of 0.1.0 (no marker yet) whose study.yaml names this study."""
    entries = [e for e in store.entries() if e not in LEFT_BY_A_REFUSED_RUN]
    if not entries:
        return None
    where = store.location
    if MARKER_NAME in entries:
        try:
            saved = json.loads(store.get_text(MARKER_NAME) or "")
            owner, version = saved["study"], saved["format"]
        except (ValueError, TypeError, KeyError):
            return f"{store.join(MARKER_NAME)} is damaged; if {where} is the store of study {name!r}, remove that file and run again"
        if owner != name:
            return f"{where} is the store of another study ({str(owner)[:100]!r}), not of {name!r}; give this study its own `name` or `storage`"
        if version != STORE_FORMAT:
            return f"{where} is a store of format {str(version)[:20]}, which this release does not read (it reads format {STORE_FORMAT})"
        return None
    owner = _stored_study_name(store) if "study.yaml" in entries else None
    if owner == name and ({"trials", STATE_NAME} & set(entries)):
        return None  # written before stores carried a marker: adopted
    if owner is not None:
        return f"{where} holds a study.yaml of another study ({owner[:100]!r}), not of {name!r}; give this study its own `name` or `storage`"
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    return f"{where} is not empty and is not a study store (it holds {shown}); give the study an empty or new folder (`storage`, `name`)"


def _stored_study_name(store: "Store | Any") -> str | None:
    """The `name` in a store's study.yaml, or "" when the file is not a study's."""
    import yaml

    try:
        data = yaml.safe_load(store.get_text("study.yaml") or "")
    except yaml.YAMLError:
        return ""
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else ""


def check_writable(directory: Path, what: str) -> None:
    """Raise `StoreError` unless a file (a few KB, synced) can be written and removed in `directory`,
    which must not be a symbolic link (the report step writes and deletes files there)."""
    if directory.is_symlink():
        raise StoreError(f"{what} {directory} is a symbolic link; refusing to write through it (give its real path)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-") as probe:
            probe.write(b"\0" * 16384)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise StoreError(f"cannot write to {what} {directory}: {exc.strerror or exc}") from None


Location = Union[Path, str]  # a local folder, or an object-store URI


def store_root(study: "Study", storage: str | None = None) -> Location:
    """Where a study's store lives: `<storage>/<name>`, `storage` (e.g. `--storage`) overriding the
    study's; a local path (resolved), or an object-store URI (`s3://bucket/prefix/<name>`)."""
    base = storage or study.storage
    if is_uri(base):
        return join_uri(base, study.name)
    return (Path(local_path_of(base)) / study.name).resolve()
