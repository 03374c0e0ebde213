"""Atomic, weights-only trial checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from s3l_core.atomic import atomic_file

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, truncated, or from another config."""


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` via a temp file and rename, so a crash never leaves half a file."""
    with atomic_file(path) as handle:
        torch.save({"format_version": FORMAT_VERSION, **state}, handle)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with `weights_only=True` (no pickled code runs); raise `CheckpointError` on any defect."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # truncated zip, garbage bytes, disallowed globals ...
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} is not an s3l_core checkpoint (format version {FORMAT_VERSION})")
    return state
