"""Dataset pickles load through a restricted unpickler: data only, never code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from s3l_core.data import load_dataset
from s3l_core.safe_pickle import UnsafePickleError, load_data_pickle


class RunsCode:
    """Unpickling this calls os.system: what a crafted CIFAR batch can do to plain pickle.load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_numpy_arrays_lists_dicts_bytes_and_str_load(tmp_path: Path):
    batch = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), b"labels": [1, 2, 3], b"batch_label": "training batch 1 of 5", b"raw": b"\x00\x01"}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    loaded = load_data_pickle(path)
    assert np.array_equal(loaded[b"data"], batch[b"data"]) and loaded[b"labels"] == [1, 2, 3]


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": RunsCode(marker)}))
    with pytest.raises(UnsafePickleError, match=r"refused to load posix\.system"):
        load_data_pickle(path)
    assert not marker.exists()


def test_cifar_loader_refuses_a_malicious_batch_without_running_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("S3L_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(UnsafePickleError):
        load_dataset("cifar10", data_dir=str(tmp_path))
    assert not marker.exists()
