"""Accuracy-vs-cost reports for a study store: pure functions over pandas DataFrames.

``write_report(store_dir, report_dir)`` reads ``results.parquet``, ``epochs.parquet``,
``study.yaml``, ``provenance.json`` (and ``state.json`` if present) and writes
``index.html`` plus PNG figures; the pieces underneath are usable on their own.
"""

from .build import build_page, write_report
from .pareto import pareto_mask
from .store import StoreSnapshot, load_store
from .summary import (
    Headline,
    cost_model_error,
    headline,
    knob_columns,
    knob_summary,
    primary_cost,
    s3l_check,
    s3l_summary,
    study_objectives,
)

__all__ = [
    "Headline",
    "StoreSnapshot",
    "build_page",
    "cost_model_error",
    "headline",
    "knob_columns",
    "knob_summary",
    "load_store",
    "pareto_mask",
    "primary_cost",
    "s3l_check",
    "s3l_summary",
    "study_objectives",
    "write_report",
]
