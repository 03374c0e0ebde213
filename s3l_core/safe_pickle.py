"""A restricted unpickler for dataset files (CIFAR batches) that come from a chosen folder.

`pickle.load` runs whatever a file names (`os.system`, `builtins.eval` ...). Dataset pickles
hold only numpy arrays, lists, dicts, numbers, bytes and str; any other global is refused.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core import multiarray

# (module, name) a numpy array pickle refers to; numpy 1 wrote numpy.core, numpy 2 numpy._core.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, "_reconstruct"): multiarray._reconstruct for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): multiarray.scalar for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how protocol 2 spells a bytes object (a data transform, no code)
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that names a global outside `ALLOWED_GLOBALS` (it could run code)."""


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refused to load {module}.{name}: only numpy arrays, lists, dicts, numbers, bytes and str are allowed") from None


def load_data_pickle(path: Path, encoding: str = "latin1") -> Any:
    """Unpickle a data file (numpy arrays and plain containers only)."""
    with open(path, "rb") as handle:
        try:
            return RestrictedUnpickler(handle, encoding=encoding).load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{path}: {exc}") from None
