"""Atomic file writes: readers (and a crash) see the old file or the new one, never half."""

from __future__ import annotations

import json
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


MANIFEST_NAME = ".written.json"  # the files the last `write_file_set` wrote into a folder


class UnsafeFolderError(OSError):
    """A folder that must not be written into: a symbolic link (it could point anywhere)."""


def write_file_set(folder: Path, files: dict[str, bytes]) -> None:
    """Write `files` (name -> bytes, in order: put the page that links the others last) into
    `folder`, each atomically, then delete what the previous call wrote and this one did not.

    Only files listed in the folder's manifest are ever deleted, so a folder shared with other
    files loses nothing; a folder that is a symbolic link is refused.
    """
    if folder.is_symlink():
        raise UnsafeFolderError(f"{folder} is a symbolic link; refusing to write or delete files through it")
    for name in files:
        if Path(name).name != name or name in ("", ".", "..", MANIFEST_NAME):
            raise ValueError(f"{name!r} is not a plain file name")
    folder.mkdir(parents=True, exist_ok=True)
    before = _manifest(folder)
    for name, data in files.items():
        write_atomic(folder / name, data)
    write_atomic(folder / MANIFEST_NAME, json.dumps(sorted(files)))
    for name in before - set(files):
        (folder / name).unlink(missing_ok=True)


def _manifest(folder: Path) -> set[str]:
    try:
        names = json.loads((folder / MANIFEST_NAME).read_text())
    except (FileNotFoundError, ValueError):
        return set()
    return {n for n in names if isinstance(n, str) and Path(n).name == n and n not in ("", ".", "..")} if isinstance(names, list) else set()
