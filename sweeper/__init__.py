"""s3l-sweep: S3L studies as Ray Tune sweeps, with accuracy-vs-cost reports.

Sub-packages, each with one job: `study` (read, check and expand a study file), `store` (a
study's records on disk or an object store, and its tables), `estimate` (predicted cost before a
run), `tune` (the only one that imports Ray: run a study, train a trial, watch it), `report`
(the answer). `cli` is the command line.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_exports(package: str, public: dict[str, str]) -> Callable[[str], Any]:
    """A package's `__getattr__` that loads `public`'s names (name -> submodule) on first use, so
    importing one submodule never loads its siblings (Ray, torch and pandas stay where they are needed)."""

    def __getattr__(name: str) -> Any:
        if name in public:
            return getattr(import_module(f"{package}.{public[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
