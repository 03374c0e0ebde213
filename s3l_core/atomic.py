"""Atomic file writes: readers (and a crash) see the old file or the new one, never half."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o644  # mkstemp makes 0600 files; results and reports are meant to be shared


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary handle on a temp file beside `path`, fsynced and renamed onto it on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | str) -> None:
    with atomic_file(path) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
