"""Accuracy-vs-cost reports for a study store: pure functions over pandas DataFrames.

``write_report(store_dir, report_dir)`` reads ``results.parquet``, ``epochs.parquet``,
``study.yaml``, ``provenance.json`` (and ``state.json`` if present) and writes
``index.html`` plus PNG figures, and ``summary.txt`` (its warnings, verdict and headline as text).
Underneath: ``stats`` (intervals), ``verdict`` (the rule), ``compare`` (configurations, fair
pairs, trend fits), ``claims`` (the sentences), ``figures`` and ``layout`` (figures and their
checks), ``page`` (HTML).
"""

from .build import ANSWER_NAME, build_page, write_report
from .claims import Headline, headline, verdict_line
from .compare import configurations, fair_pairs, trend_fits
from .pareto import pareto_mask
from .store import StoreSnapshot, load_store
from .summary import cost_model_error, knob_columns, primary_cost, study_objectives

__all__ = [
    "ANSWER_NAME",
    "Headline",
    "StoreSnapshot",
    "build_page",
    "configurations",
    "cost_model_error",
    "fair_pairs",
    "headline",
    "knob_columns",
    "load_store",
    "pareto_mask",
    "primary_cost",
    "study_objectives",
    "trend_fits",
    "verdict_line",
    "write_report",
]
