"""Atomic, weights-only, verified trial checkpoints.

`save_checkpoint` writes the file (temp file, fsync, rename) and then a digest beside it
(`checkpoint.pt.sha256`: size and SHA-256). A checkpoint copied elsewhere (Ray copies each
into the store, not atomically) is verified against its digest before it is used, so a
half or zero-byte copy is never taken for the newest checkpoint.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from s3l_core.atomic import atomic_file, write_atomic

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
DIGEST_SUFFIX = ".sha256"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, truncated, or from another config."""


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def file_digest(path: Path) -> str:
    """`<size> <sha256>` of a file."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
            size += len(block)
    return f"{size} {sha.hexdigest()}"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` via a temp file and rename, then its digest (written last, so a
    digest always describes a whole file)."""
    digest_path(path).unlink(missing_ok=True)  # until the new digest is written, torch.load's checks alone apply
    with atomic_file(path) as handle:
        torch.save({"format_version": FORMAT_VERSION, **state}, handle)
    write_atomic(digest_path(path), file_digest(path) + "\n")


def verify_checkpoint(path: Path) -> None:
    """Raise `CheckpointError` unless `path` matches its digest. A checkpoint without a digest
    (written before digests existed) is left to `torch.load`'s own checks."""
    try:
        expected = digest_path(path).read_text().strip()
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint digest {digest_path(path)} is unreadable ({exc})") from None
    if len(expected.split()) != 2 or not expected.split()[0].isdigit():
        raise CheckpointError(f"checkpoint digest {digest_path(path)} is damaged ({len(expected)} characters)")  # e.g. cut short by a full disk
    try:
        actual = file_digest(path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({exc.strerror or exc})") from None
    if actual != expected:
        size = actual.split()[0]
        raise CheckpointError(f"checkpoint {path} is incomplete or damaged ({size} bytes; its digest says {expected.split()[0]})")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Verify, then load with `weights_only=True` (no pickled code runs); raise `CheckpointError`
    on any defect."""
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 (truncated zip, empty file, garbage bytes, disallowed globals ...)
        raise CheckpointError(f"checkpoint {path} is unreadable ({_first_line(exc)})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} is not an s3l_core checkpoint (format version {FORMAT_VERSION})")
    return state


def _first_line(exc: BaseException) -> str:
    """`Type: first line of the message` (an EOFError of an empty file has no message at all)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:120]}" if lines else type(exc).__name__
