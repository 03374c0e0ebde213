"""Atomic writes: the old file survives a failed write, and no temp file is left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s3l_core.atomic import atomic_file, write_atomic


def test_write_atomic_replaces_and_leaves_shareable_files(tmp_path: Path):
    target = tmp_path / "deep" / "results.csv"
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["results.csv"]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch):
    target = tmp_path / "results.csv"
    write_atomic(target, "old")

    def disk_full(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_an_exception_inside_the_block_writes_nothing(tmp_path: Path):
    target = tmp_path / "checkpoint.pt"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as handle:
            handle.write(b"half")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_a_file_set_deletes_only_what_it_wrote_before(tmp_path: Path):
    from s3l_core.atomic import write_file_set

    write_file_set(tmp_path, {"fig_a.png": b"a", "fig_b.png": b"b", "index.html": b"page"})
    (tmp_path / "fig_user.png").write_bytes(b"user's")
    write_file_set(tmp_path, {"fig_a.png": b"a2", "index.html": b"page2"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".written.json", "fig_a.png", "fig_user.png", "index.html"]
    assert (tmp_path / "fig_a.png").read_bytes() == b"a2"


def test_a_file_set_refuses_a_symlinked_folder(tmp_path: Path):
    from s3l_core.atomic import UnsafeFolderError, write_file_set

    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UnsafeFolderError):
        write_file_set(tmp_path / "link", {"index.html": b"page"})
    assert list(target.iterdir()) == []
