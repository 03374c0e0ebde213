"""The single-driver lock of a study on an object store: a lease object `<store>/.lease`.

A driver creates the lease with a conditional write (`If-None-Match: *`: the PUT fails if the
object exists), renews it every `ttl/4` seconds while it runs (`If-Match: <its ETag>`), and
deletes it when it ends. A killed driver stops renewing, so its lease expires `ttl` seconds
after its last renewal (by the store's clock, `LastModified`); the next driver then replaces
the expired lease, again conditionally (`If-Match` on the expired lease's ETag), so of two
drivers racing for it exactly one wins.

pyarrow's S3 file system cannot send these headers, so on `s3://` the lease (and only the
lease) goes through boto3 (`put_object(..., IfNoneMatch='*')`), with the endpoint and
credentials the store uses. Other stores (`gs://` through pyarrow, ...) get a best-effort
lease: read, write if absent or expired, wait, read back and keep it only if it is still ours.
That refuses a second driver started while the first one runs, but two drivers started within
a second of each other could both believe they hold it.

`S3L_LEASE_TTL_S` (default 60) sets the lease's lifetime.

Fencing: a driver paused past its lease (SIGSTOP, a suspended VM) wakes up to find another
driver holding it, while its Ray workers may have kept training. So the lease's identity (its
`token`, which renewals keep, and its `generation`, one more at each takeover) travels as a
`Fence` to everything that writes for the driver: its own store and each trial's. Before a
record, `state.json`, a table or the report is written, `Fencing.check` reads the lease and
raises `LeaseLost` unless it still holds the writer's token; on `s3://` the write is then
conditional on the object being unchanged since just before that check (`If-Match` on its
ETag, or `If-None-Match: *`), so a write delayed past a takeover cannot replace what the new
holder wrote. Records carry the fence (`"lease": {token, holder, generation}`). A renewal that
is refused marks the lease `lost`; the runner's stopper then ends the run (`sweeper/tune/runner.py`).
A local store's `flock` is kept by a paused driver, so local stores need none of this.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from sweeper.store.local import StoreError
from sweeper.store.uris import s3_endpoint, store_problem

log = logging.getLogger("sweeper.store.local")

LEASE_NAME = ".lease"
TTL_ENV = "S3L_LEASE_TTL_S"
DEFAULT_TTL_S = 60.0
BEST_EFFORT_SETTLE_S = 1.0


def lease_ttl() -> float:
    try:
        return max(2.0, float(os.environ.get(TTL_ENV, DEFAULT_TTL_S)))
    except ValueError:
        return DEFAULT_TTL_S


class _Taken(Exception):
    """The conditional write lost: someone else's lease (or a newer object) is there."""


class LeaseLost(StoreError):
    """Another driver holds the study's lease now: whoever raised this must stop and write nothing."""

    def __init__(self, location: str, holder: str | None):
        self.location, self.holder = location, holder
        what = f"was taken by {holder}" if holder else "is gone (removed by someone else)"
        super().__init__(f"the lease on {location} {what}")

    def __reduce__(self) -> tuple[Any, ...]:  # Ray pickles a worker's exception: keep both fields
        return type(self), (self.location, self.holder)


@dataclass(frozen=True)
class Fence:
    """The identity of one lease, carried by every writer of its driver (pickled to the workers)."""

    token: str
    holder: str
    generation: int


class Lease:
    """Acquire, renew and release one store's lease; the backend does the conditional writes.

    `clock` (epoch seconds) is this driver's idea of now, against which a lease read from the
    store expires; tests pass a later one instead of waiting."""

    def __init__(self, store: Any, backend: "Backend", ttl: float | None = None, clock: Callable[[], float] = time.time):
        self.store, self.backend, self.clock = store, backend, clock
        self.ttl = ttl if ttl is not None else lease_ttl()
        self.token = uuid.uuid4().hex
        self.holder = f"pid {os.getpid()} on {socket.gethostname()}"
        self.generation = 1
        self.etag: str | None = None
        self.lost: str | None = None  # why this driver no longer holds the lease: "the lease on ... was taken by ..."
        self._stop = threading.Event()

    @property
    def fence(self) -> Fence:
        return Fence(self.token, self.holder, self.generation)

    def body(self) -> bytes:
        return json.dumps({"holder": self.holder, "token": self.token, "generation": self.generation, "ttl_s": self.ttl,
                           "renewed": _now_iso()}).encode()  # fmt: skip

    def is_live(self) -> bool:
        current = self.backend.read()
        return current is not None and _seconds_left(current, self.clock()) > 0

    def acquire(self) -> None:
        try:
            self.etag = self.backend.create(self.body())
            return
        except _Taken:
            pass
        current = self.backend.read()
        if current is None:  # released between our write and our read: try once more
            try:
                self.etag = self.backend.create(self.body())
                return
            except _Taken:
                current = self.backend.read()
        if current is not None and _seconds_left(current, self.clock()) <= 0:
            # an expired lease (a killed or paused driver's): replace exactly that one, one generation on
            self.generation = _generation(current) + 1
            try:
                self.etag = self.backend.replace(current["etag"], self.body())
                return
            except _Taken:
                current = self.backend.read() or current
        raise StoreError(_in_use(self.store.location, current, self.clock()))

    def renew(self) -> None:
        try:
            self.etag = self.backend.replace(self.etag, self.body())
        except _Taken:
            self.lose(holder_of(self.backend.read()))

    def lose(self, holder: str | None) -> None:
        """This driver no longer holds the lease (a refused renewal, or a write that found another
        token): stop renewing; the runner's stopper ends the run and nothing more is written."""
        if self.lost is None:
            self.lost = str(LeaseLost(self.store.location, holder))
        self._stop.set()

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 (a network blip: try again at the next tick)
                log.warning("could not renew the lease on %s: %s", self.store.location, exc)

    @contextmanager
    def held(self) -> Iterator["Lease"]:
        self.acquire()
        renewer = threading.Thread(target=self._renew_until_stopped, name="s3l-lease", daemon=True)
        renewer.start()
        try:
            yield self
        finally:
            self._stop.set()
            renewer.join(timeout=30)
            if self.lost is None:
                try:
                    self.backend.delete(self.etag)
                except Exception as exc:  # noqa: BLE001 (it expires by itself)
                    log.warning("could not remove the lease on %s (it expires in %.0f s): %s", self.store.location, self.ttl, exc)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _seconds_left(current: dict[str, Any], now: float) -> float:
    """Seconds until a lease read from the store expires at `now` (its LastModified + its ttl)."""
    ttl = float(current.get("ttl_s") or DEFAULT_TTL_S)
    return current["modified"] + ttl - now


def _generation(current: dict[str, Any]) -> int:
    try:
        return int(current.get("generation") or 1)
    except (TypeError, ValueError):
        return 1


def holder_of(current: dict[str, Any] | None) -> str | None:
    """Who holds a lease read from the store, as messages name it; None when there is no lease."""
    if current is None:
        return None
    return f"{current.get('holder') or 'another driver'} (lease generation {_generation(current)})"


def _in_use(location: str, current: dict[str, Any] | None, now: float) -> str:
    if current is None:
        return f"study store {location} is in use by another driver; wait for it or stop it first"
    left = max(0.0, _seconds_left(current, now))
    return (f"study store {location} is in use by {current.get('holder') or 'another driver'} (its lease expires in {left:.0f} s "
            "unless renewed); wait for it or stop it first")


class Backend:
    """Conditional writes of one object: `create` (If-None-Match), `replace` (If-Match), `read`, `delete`."""

    def create(self, body: bytes) -> str:  # the new ETag; _Taken if the object exists
        raise NotImplementedError

    def replace(self, etag: str | None, body: bytes) -> str:  # the new ETag; _Taken unless the object's ETag is `etag`
        raise NotImplementedError

    def read(self) -> dict[str, Any] | None:  # the lease's JSON plus "etag" and "modified" (epoch seconds)
        raise NotImplementedError

    def delete(self, etag: str | None) -> None:
        raise NotImplementedError


class S3Backend(Backend):
    """The lease through boto3: S3's conditional PUT (If-None-Match / If-Match)."""

    def __init__(self, store: Any):
        import boto3
        from botocore.config import Config

        endpoint, query = s3_endpoint(store.uri)
        options = dict(parse_qsl(query))
        kwargs: dict[str, Any] = {"config": Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2})}
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        if options.get("region"):
            kwargs["region_name"] = options["region"]
        self.uri = store.uri
        self.client = boto3.session.Session().client("s3", **kwargs)  # a fresh session: credentials as the environment has them now
        self.bucket, _, prefix = store.base.partition("/")
        self.key = f"{prefix}/{LEASE_NAME}" if prefix else LEASE_NAME

    def _call(self, method: str, key: str | None = None, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, Key=key or self.key, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                raise _Taken from None
            if code in ("NoSuchKey", "404") or status == 404 and method in ("head_object", "get_object"):
                if code == "NoSuchBucket":
                    raise StoreError(store_problem(self.uri, exc)) from None
                return None
            raise StoreError(store_problem(self.uri, exc)) from None
        except BotoCoreError as exc:
            raise StoreError(store_problem(self.uri, exc)) from None

    def create(self, body: bytes) -> str:
        return self._call("put_object", Body=body, IfNoneMatch="*")["ETag"]

    def replace(self, etag: str | None, body: bytes) -> str:
        if etag is None:
            raise _Taken
        return self._call("put_object", Body=body, IfMatch=etag)["ETag"]

    def read(self) -> dict[str, Any] | None:
        got = self._call("get_object")
        if got is None:
            return None
        try:
            value = json.loads(got["Body"].read())
        except ValueError:
            value = {}
        return {**(value if isinstance(value, dict) else {}), "etag": got["ETag"], "modified": got["LastModified"].timestamp()}

    def delete(self, etag: str | None) -> None:
        current = self.read()
        if current is not None and current["etag"] == etag:  # never remove a lease another driver took
            self._call("delete_object")

    # Any object of the store (records, state, tables), for fenced writes.
    def key_of(self, path: str) -> str:
        """The key of a path on the store's file system (`bucket/key`)."""
        return path.partition("/")[2]

    def etag_of(self, key: str) -> str | None:
        got = self._call("head_object", key=key)
        return None if got is None else got["ETag"]

    def put_unchanged(self, key: str, body: bytes, etag: str | None) -> None:
        """PUT `key` only if it still has ETag `etag` (None: only if it is absent); `_Taken` otherwise."""
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        self._call("put_object", key=key, Body=body, **condition)


class BestEffortBackend(Backend):
    """A store without conditional writes through pyarrow: write, settle, read back, compare."""

    def __init__(self, store: Any):
        self.store = store
        self.path = f"{store.base}/{LEASE_NAME}"

    def read(self) -> dict[str, Any] | None:
        import pyarrow.fs as pafs

        info = self.store.fs.get_file_info(self.path)
        data = self.store._get_path(self.path) if info.type != pafs.FileType.NotFound else None
        if data is None:
            return None
        try:
            value = json.loads(data)
        except ValueError:
            value = {}
        value = value if isinstance(value, dict) else {}
        modified = info.mtime.timestamp() if info.mtime is not None else time.time()
        return {**value, "etag": value.get("token"), "modified": modified}

    def _write_and_confirm(self, body: bytes) -> str:
        self.store._put_path(self.path, body)
        time.sleep(BEST_EFFORT_SETTLE_S)
        token = json.loads(body)["token"]
        current = self.read()
        if current is None or current.get("token") != token:
            raise _Taken
        return token

    def create(self, body: bytes) -> str:
        if self.read() is not None:
            raise _Taken
        return self._write_and_confirm(body)

    def replace(self, etag: str | None, body: bytes) -> str:
        current = self.read()
        if current is None or current.get("etag") != etag:
            raise _Taken
        if json.loads(body)["token"] == etag:  # our own renewal
            self.store._put_path(self.path, body)
            return etag
        return self._write_and_confirm(body)

    def delete(self, etag: str | None) -> None:
        current = self.read()
        if current is not None and current.get("etag") == etag:
            self.store.fs.delete_file(self.path)


def backend_for(store: Any) -> Backend:
    """How a store's lease is written: conditional writes on s3:// (boto3), best effort elsewhere."""
    if urlsplit(store.uri).scheme == "s3":
        try:
            return S3Backend(store)
        except ImportError as exc:
            if (exc.name or "").partition(".")[0] not in ("boto3", "botocore"):
                raise  # not a missing boto3: a broken dependency of it, say, which must show as what it is
            raise StoreError(f"a study store on s3:// ({store.location}) needs boto3 for its lease (S3's conditional writes): "
                             "pip install 's3l-sweep[s3]'") from None
    return BestEffortBackend(store)


def lease_for(store: Any) -> Lease:
    """The lease of a store."""
    return Lease(store, backend_for(store))


class Fencing:
    """The writes of one driver (or of one of its trials) to a store, fenced by its lease: each is
    refused with `LeaseLost` unless the lease object still holds `fence.token`; `on_lost` (the
    driver's `Lease.lose`) hears of a loss found this way."""

    def __init__(self, store: Any, fence: Fence, backend: Backend | None = None, on_lost: Callable[[str | None], None] | None = None):
        self.store, self.fence, self.on_lost = store, fence, on_lost
        self.backend = backend if backend is not None else backend_for(store)

    def check(self) -> None:
        """Raise `LeaseLost` unless the lease still holds this writer's token."""
        current = self.backend.read()
        if current is not None and current.get("token") == self.fence.token:
            return
        holder = holder_of(current)
        if self.on_lost is not None:
            self.on_lost(holder)
        raise LeaseLost(self.store.location, holder)

    def put(self, path: str, data: bytes, plain_put: Callable[[str, bytes], None]) -> None:
        """Write one object if the lease is still ours. On s3:// the PUT is conditional on the
        object being as it was just before the check, so a write delayed past a takeover (the
        process paused between check and PUT) cannot replace what the new holder wrote since."""
        if not isinstance(self.backend, S3Backend):
            self.check()
            plain_put(path, data)
            return
        key = self.backend.key_of(path)
        for _ in range(2):  # a second try only for a change by this driver itself, which the check lets through
            before = self.backend.etag_of(key)
            self.check()
            try:
                self.backend.put_unchanged(key, data, before)
                return
            except _Taken:
                continue
        self.check()
        raise StoreError(f"s3://{self.backend.bucket}/{key} changed twice while this driver wrote it; run again")

    def stamp(self) -> dict[str, Any]:
        """What a record carries of the lease it was written under."""
        return asdict(self.fence)
