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
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sweeper.store import StoreError
from sweeper.uris import s3_endpoint, store_problem

log = logging.getLogger("sweeper.store")

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
    """The conditional write lost: someone else's lease is there."""


class Lease:
    """Acquire, renew and release one store's lease; the backend does the conditional writes."""

    def __init__(self, store: Any, backend: "Backend", ttl: float | None = None):
        self.store, self.backend = store, backend
        self.ttl = ttl if ttl is not None else lease_ttl()
        self.token = uuid.uuid4().hex
        self.holder = f"pid {os.getpid()} on {socket.gethostname()}"
        self.etag: str | None = None
        self.lost: str | None = None
        self._stop = threading.Event()

    def body(self) -> bytes:
        return json.dumps({"holder": self.holder, "token": self.token, "ttl_s": self.ttl, "renewed": _now_iso()}).encode()

    def is_live(self) -> bool:
        current = self.backend.read()
        return current is not None and _seconds_left(current) > 0

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
        if current is not None and _seconds_left(current) <= 0:
            try:  # an expired lease (a killed driver's): replace exactly that one
                self.etag = self.backend.replace(current["etag"], self.body())
                return
            except _Taken:
                current = self.backend.read() or current
        raise StoreError(_in_use(self.store.location, current))

    def renew(self) -> None:
        try:
            self.etag = self.backend.replace(self.etag, self.body())
        except _Taken:
            self.lost = f"the lease on {self.store.location} was taken by another driver"
            log.error("%s: this driver no longer holds the study; stop it", self.lost)
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


def _seconds_left(current: dict[str, Any]) -> float:
    """Seconds until a lease read from the store expires (its LastModified + its ttl, against this clock)."""
    ttl = float(current.get("ttl_s") or DEFAULT_TTL_S)
    return current["modified"] + ttl - time.time()


def _in_use(location: str, current: dict[str, Any] | None) -> str:
    if current is None:
        return f"study store {location} is in use by another driver; wait for it or stop it first"
    left = max(0.0, _seconds_left(current))
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

    def _call(self, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, Key=self.key, **kwargs)
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


def lease_for(store: Any) -> Lease:
    """The lease of a store: conditional writes on s3:// (boto3), best effort elsewhere."""
    if urlsplit(store.uri).scheme == "s3":
        try:
            return Lease(store, S3Backend(store))
        except ImportError:
            raise StoreError(f"a study store on s3:// ({store.location}) needs boto3 for its lease (S3's conditional writes): "
                             "pip install 's3l-sweep[s3]'") from None
    return Lease(store, BestEffortBackend(store))
