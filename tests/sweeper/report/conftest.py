"""Fixtures for the report tests: generated study stores (see ``synthetic.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # lets the tests `import synthetic` under any import mode
    sys.path.insert(0, str(HERE))

import synthetic  # noqa: E402


@pytest.fixture
def make_store(tmp_path):
    """Factory: ``make_store(n_trials, **options)`` writes a store under tmp_path, returns its folder."""
    counter = iter(range(1_000_000))

    def factory(n_trials: int = 60, **options) -> Path:
        return synthetic.make_store(tmp_path / f"store{next(counter)}", n_trials, **options)

    return factory
