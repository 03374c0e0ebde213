"""A study store on an object store: `s3://bucket/prefix`, `gs://...` or any `pyarrow.fs` URI.

The same layout and guarantees as a local store (`sweeper/store/local.py`), object by object:
a record, a table or `state.json` is one object written whole (one PUT: a reader sees the
old object or the new one), finished trials are found by listing `trials/`, Ray Tune keeps
its checkpoints under `ray/` through `storage_path` + `storage_filesystem`, and the
single-driver lock is a lease object (`sweeper/store/lease.py`).

Fenced writes: while the driver holds the lease (inside `lock()`), and in each trial (opened with
the driver's `Fence`), `put`, `write_record`, `check_writable` and `check_fence` first check that
the lease still holds this driver's token, and refuse with `LeaseLost` otherwise; on `s3://` those
writes go through boto3 as conditional PUTs (`Fencing.put`). Records so written carry the fence.

Where the endpoint and credentials come from, in the standard ways: the URI's query as
`pyarrow.fs.FileSystem.from_uri` reads it (`?endpoint_override=127.0.0.1:9000&scheme=http`),
else the AWS environment (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, profiles, instance roles). Every node resolves them
itself: the URI travels to the workers; an embedded Ray's workers inherit the driver's environment,
an attached cluster's have their own node's (docs/cluster.md, "What travels to the workers").
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from sweeper.store.lease import Fence, Fencing, Lease, lease_for
from sweeper.store.local import STATE_NAME, Location, Store, StoreError, finished_ids, json_text, parse_record
from sweeper.store.uris import credentials_problem, display_uri, first_line, is_uri, join_uri, local_path_of, s3_endpoint, store_problem

if TYPE_CHECKING:
    import pyarrow.fs as pafs  # imported where used: `status` of a local store stays free of pyarrow and numpy

__all__ = ["DRIVER_FILES", "ObjectStore", "check_report_writable", "display_uri", "is_uri", "join_uri", "local_path_of", "open_store", "upload_folder"]

log = logging.getLogger("sweeper.store.local")

DRIVER_FILES = ("optuna.db", "mlflow.db")  # SQLite files only the driver opens: kept locally, copied to the store


def open_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow file system, path on it) of a store URI; `StoreError` naming the problem."""
    import pyarrow.fs as pafs

    problem = credentials_problem(uri)
    if problem:
        raise StoreError(problem)
    parts = urlsplit(uri)
    if parts.scheme == "s3":
        _, query = s3_endpoint(uri)
        uri = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(f"cannot open the object store {display_uri(uri)}: {first_line(exc)}") from None
    return fs, path.rstrip("/")


class ObjectStore:
    """`runs/<name>/` as objects under a URI; the interface of `sweeper.store.local.Store`."""

    remote = True

    def __init__(self, uri: str, fence: Fence | None = None):
        self.uri = uri.rstrip("/")
        self.fs, self.base = open_filesystem(self.uri)
        self.trials_dir = f"{self.base}/trials"
        self.ray_dir = f"{self.base}/ray"
        self.fence = fence  # the lease its writes must still find: the driver's, inside `lock()`; a trial's, given
        self._fencing: Fencing | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the driver's callbacks (and so this store) into its tuner.pkl: the fencing
        # holds a boto3 client and the driver's lease, neither of which pickles; a copy makes its own.
        return {**self.__dict__, "_fencing": None}

    # ------------------------------------------------------------------ naming
    @property
    def location(self) -> str:
        return display_uri(self.uri)

    def join(self, name: str) -> str:
        return f"{self.location}/{name}"

    def __str__(self) -> str:
        return self.location

    # ------------------------------------------------------------------ objects
    def put(self, name: str, data: bytes | str) -> None:
        """One object, written whole: an S3 PUT (or a multipart upload completed at close) is atomic."""
        self._put_fenced(f"{self.base}/{name}", data)

    def _put_fenced(self, path: str, data: bytes | str) -> None:
        fencing = self._fencing_now()
        if fencing is None:
            self._put_path(path, data)
        else:
            fencing.put(path, data.encode() if isinstance(data, str) else data, self._put_path)

    def _fencing_now(self) -> Fencing | None:
        if self.fence is not None and self._fencing is None:
            self._fencing = Fencing(self, self.fence)
        return self._fencing

    def check_fence(self) -> None:
        """Raise `LeaseLost` if this store's writer was fenced off: another driver holds the lease now."""
        fencing = self._fencing_now()
        if fencing is not None:
            fencing.check()

    def _put_path(self, path: str, data: bytes | str) -> None:
        try:
            with self.fs.open_output_stream(path) as handle:
                handle.write(data.encode() if isinstance(data, str) else data)
        except OSError as exc:
            raise StoreError(store_problem(self.uri, exc)) from None

    def put_json(self, name: str, value: Any) -> None:
        self.put(name, json_text(value))

    def get_bytes(self, name: str) -> bytes | None:
        return self._get_path(f"{self.base}/{name}")

    def _get_path(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if "not found" in str(exc).lower() or "NoSuchKey" in str(exc):
                return None
            raise StoreError(store_problem(self.uri, exc)) from None

    def get_text(self, name: str) -> str | None:
        data = self.get_bytes(name)
        return None if data is None else data.decode(errors="replace")

    def entries(self) -> list[str]:
        """The names at the store's top level (none when nothing is under its prefix)."""
        return sorted(info.base_name for info in self._list(self.base))

    def has(self, name: str) -> bool:
        import pyarrow.fs as pafs

        try:
            return self.fs.get_file_info(f"{self.base}/{name}").type != pafs.FileType.NotFound
        except OSError as exc:
            raise StoreError(store_problem(self.uri, exc)) from None

    # ------------------------------------------------------------------ records
    def record_path(self, tid: str) -> str:
        return f"{self.trials_dir}/{tid}.json"

    def write_record(self, record: dict[str, Any]) -> None:
        fencing = self._fencing_now()
        if fencing is not None:  # which driver's lease the record was written under
            record = {**record, "lease": fencing.stamp()}
        self._put_fenced(self.record_path(record["trial_id"]), json_text(record))

    def read_record(self, tid: str) -> dict[str, Any] | None:
        data = self._get_path(self.record_path(tid))
        return None if data is None else parse_record(data, tid, self.join(f"trials/{tid}.json"))

    def _list(self, directory: str) -> list[pafs.FileInfo]:
        import pyarrow.fs as pafs

        try:
            return self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        except OSError as exc:
            raise StoreError(store_problem(self.uri, exc)) from None

    def records(self) -> Iterator[dict[str, Any]]:
        names = sorted(info.base_name for info in self._list(self.trials_dir) if info.is_file and info.base_name.endswith(".json"))
        for name in names:
            record = self.read_record(name[: -len(".json")])
            if record is not None:
                yield record

    def finished_ids(self) -> set[str]:
        return finished_ids(self.records())

    # ------------------------------------------------------------------ checkpoints
    def latest_checkpoint_dirs(self, tid: str) -> list[str]:
        """This trial's Ray checkpoint folders from every earlier attempt, newest first (by the
        time their checkpoint file was written: Ray numbers checkpoints afresh in each attempt)."""
        import pyarrow.fs as pafs

        found: list[tuple[float, str]] = []
        for attempt in self._list(self.ray_dir):
            if attempt.type != pafs.FileType.Directory:
                continue
            for checkpoint in self._list(f"{attempt.path}/{tid}"):
                if checkpoint.type == pafs.FileType.Directory and checkpoint.base_name.startswith("checkpoint_"):
                    files = [f for f in self._list(checkpoint.path) if f.is_file]
                    written = max((f.mtime.timestamp() for f in files if f.mtime is not None), default=0.0)
                    found.append((written, checkpoint.path))
        return [path for _, path in sorted(found, reverse=True)]

    def checkpoint_copies(self, tid: str) -> Iterator[Path]:
        """Each earlier checkpoint of the trial, newest first, copied into a local folder while it is read."""
        import pyarrow.fs as pafs

        for remote in self.latest_checkpoint_dirs(tid):
            with tempfile.TemporaryDirectory(prefix=f"s3l-{tid}-ckpt-") as local:
                try:
                    pafs.copy_files(remote, local, source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem())
                except OSError as exc:
                    log.warning("trial %s: cannot copy checkpoint %s: %s", tid, remote, first_line(exc))
                    continue
                yield Path(local)

    def ray_storage(self) -> tuple[str, pafs.FileSystem]:
        """(`storage_path`, `storage_filesystem`) for Ray Tune's `RunConfig`."""
        return self.ray_dir, self.fs

    # ------------------------------------------------------------------ the driver's lease and state
    def lease(self) -> Lease:
        return lease_for(self)

    @contextmanager
    def lock(self) -> Iterator[Lease]:
        """Hold the study's lease while the driver runs (a second driver is refused while it is live),
        every write of this store fenced by it."""
        with self.lease().held() as lease:
            self.fence, self._fencing = lease.fence, Fencing(self, lease.fence, lease.backend, lease.lose)
            try:
                yield lease
            finally:
                self.fence, self._fencing = None, None

    def is_locked(self) -> bool:
        return lease_for(self).is_live()

    def state(self) -> str:
        text = self.get_text(STATE_NAME)
        if text is None:
            return "unknown (no state.json)"
        try:
            saved = json.loads(text)
            state = str(saved["state"])
        except (ValueError, TypeError, KeyError):
            return "unknown (state.json is unreadable)"
        if state == "running" and not self.is_locked():
            return f"not running (its driver stopped without finishing, last started {saved.get('since', '?')}); `run` again to resume"
        return state

    def check_writable(self, what: str = "the study store") -> None:
        """Raise `StoreError` unless an object can be written, read back and removed under the store."""
        import pyarrow.fs as pafs

        self.check_fence()  # a fenced-off driver writes nothing, not even a probe
        probe = f"{self.base}/.write-check-{uuid.uuid4().hex[:12]}"
        try:
            if urlsplit(self.uri).scheme == "s3":
                bucket = self.base.split("/", 1)[0]
                if self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                    raise StoreError(f"the bucket {bucket!r} of {self.location} does not exist; create it first")
            self._put_path(probe, b"\0" * 1024)
            self.fs.delete_file(probe)
        except StoreError as exc:
            raise StoreError(str(exc).replace("the object store", f"{what} on the object store", 1)) from None
        except OSError as exc:
            raise StoreError(store_problem(self.uri, exc)) from None

    # ------------------------------------------------------------------ copies for the driver
    def mirror(self, local: Path, names: tuple[str, ...] = ("study.yaml", "provenance.json", STATE_NAME, "results.parquet", "results.csv", "epochs.parquet")) -> Path:
        """Copy what a report reads (the small files and every trial record) into `local`; return it."""
        (local / "trials").mkdir(parents=True, exist_ok=True)
        for name in names:
            data = self.get_bytes(name)
            if data is not None:
                (local / name).write_bytes(data)
        for info in self._list(self.trials_dir):
            if info.is_file and info.base_name.endswith(".json"):
                data = self._get_path(info.path)
                if data is not None:
                    (local / "trials" / info.base_name).write_bytes(data)
        return local

    def pull(self, names: tuple[str, ...], local: Path) -> None:
        """Copy the driver's own files (SQLite: Optuna, MLflow) from the store into `local`."""
        for name in names:
            data = self.get_bytes(name)
            if data is not None:
                (local / name).write_bytes(data)

    def push(self, names: tuple[str, ...], local: Path) -> None:
        """Copy the driver's own files back into the store, each as one object."""
        for name in names:
            if (local / name).is_file():
                self.put(name, (local / name).read_bytes())


def upload_folder(local: Path, uri: str) -> None:
    """Every file under `local` to `uri/...`, each one object (a report folder)."""
    fs, base = open_filesystem(uri)
    try:
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            with fs.open_output_stream(f"{base}/{path.relative_to(local).as_posix()}") as handle:
                handle.write(path.read_bytes())
    except OSError as exc:
        raise StoreError(store_problem(uri, exc).replace("the object store", "the report folder on the object store", 1)) from None


def check_report_writable(uri: str) -> None:
    """Raise `StoreError` unless the report URI takes an object."""
    fs, base = open_filesystem(uri)
    probe = f"{base}/.write-check-{uuid.uuid4().hex[:12]}"
    try:
        with fs.open_output_stream(probe) as handle:
            handle.write(b"\0" * 1024)
        fs.delete_file(probe)
    except OSError as exc:
        raise StoreError(store_problem(uri, exc).replace("the object store", "the report folder on the object store", 1)) from None


def open_store(location: Location, fence: Fence | None = None) -> "Store | ObjectStore":
    """The store at a location: `Store` for a local folder (or `file://`), `ObjectStore` for a URI,
    its writes fenced by `fence` (a local store's `flock` needs no fence: it ignores it)."""
    if isinstance(location, str) and is_uri(location):
        return ObjectStore(location, fence)
    return Store(Path(local_path_of(str(location))))
