"""The download and decode cache shared by every dataset loader (and the measured CPU rate):
where it is, and the lock that lets one process at a time fill it. Torch-free."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from typing import Iterator


def cache_dir() -> pathlib.Path:
    """Where downloads and decoded caches go: $S3L_CACHE_DIR, else ~/.cache/s3l."""
    return pathlib.Path(os.environ.get("S3L_CACHE_DIR") or "~/.cache/s3l").expanduser()


@contextlib.contextmanager
def exclusive_lock(lock_path: pathlib.Path) -> Iterator[None]:
    """Serialise downloads and cache builds across processes (several trials per node)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
