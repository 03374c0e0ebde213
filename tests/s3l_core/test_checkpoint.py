"""Checkpoints: written whole or not at all, verified before use, any defect a CheckpointError."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from s3l_core.checkpoint import CHECKPOINT_NAME, CheckpointError, digest_path, load_checkpoint, save_checkpoint


def saved(directory: Path, epoch: int = 1) -> Path:
    path = directory / CHECKPOINT_NAME
    save_checkpoint({"epoch": epoch, "model": {"w": torch.arange(1000.0)}}, path)
    return path


def test_a_saved_checkpoint_loads_and_has_a_digest(tmp_path: Path):
    path = saved(tmp_path, epoch=3)
    assert digest_path(path).read_text().split()[0] == str(path.stat().st_size)
    assert load_checkpoint(path)["epoch"] == 3


def test_a_zero_byte_checkpoint_is_a_checkpoint_error(tmp_path: Path):
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(b"")  # what a copy interrupted by a full disk leaves
    with pytest.raises(CheckpointError, match="unreadable.*EOFError"):
        load_checkpoint(path)


def test_a_half_copied_checkpoint_is_refused_by_its_digest(tmp_path: Path):
    path = saved(tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match="incomplete or damaged"):
        load_checkpoint(path)


def test_a_changed_byte_is_refused_by_its_digest(tmp_path: Path):
    path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content: a zip that may still load
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="incomplete or damaged"):
        load_checkpoint(path)


def test_a_checkpoint_without_a_digest_still_loads_when_whole(tmp_path: Path):
    path = saved(tmp_path)
    digest_path(path).unlink()  # written before digests existed
    assert load_checkpoint(path)["epoch"] == 1


@pytest.mark.parametrize("digest", ["", "12", "garbage here"])
def test_a_damaged_digest_is_a_checkpoint_error(tmp_path: Path, digest: str):
    path = saved(tmp_path)
    digest_path(path).write_text(digest)  # a copy of the digest cut short by a full disk
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("fault", ["fsync", "replace"])
def test_a_save_that_fails_to_sync_or_rename_leaves_the_old_checkpoint_and_no_temp(tmp_path: Path, monkeypatch, fault: str):
    """The checkpoint is written through a synced temp file and a rename: a full disk at either
    step leaves the previous checkpoint whole (a plain torch.save would truncate it first)."""
    import errno
    import os

    path = saved(tmp_path, epoch=1)
    before = path.read_bytes()

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, fault, full_disk)
    with pytest.raises(OSError):
        save_checkpoint({"epoch": 2, "model": {"w": torch.zeros(1000)}}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]  # no temp file; the digest waits for a whole file
    assert torch.load(path, weights_only=True)["epoch"] == 1
