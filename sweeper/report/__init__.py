"""Accuracy-vs-cost reports for a study store: pure functions over pandas DataFrames.

``write_report(store_dir, report_dir)`` reads ``results.parquet``, ``epochs.parquet``,
``study.yaml``, ``provenance.json`` (and ``state.json`` if present) and writes
``index.html`` plus PNG figures, and ``summary.txt`` (its warnings, verdict and headline as text).
Underneath: ``stats`` (intervals), ``verdict`` (the rule), ``compare`` (configurations, fair
pairs, trend fits), ``claims`` (the sentences), ``figures`` and ``layout`` (figures and their
checks), ``page`` (HTML).
"""

from sweeper import lazy_exports

# Loaded on first use: `run` on a current store reads the report's file names without pandas or matplotlib.
_PUBLIC = {
    "ANSWER_NAME": "files", "INDEX_NAME": "files", "build_page": "build", "write_report": "build",
    "Headline": "claims", "headline": "claims", "verdict_line": "claims",
    "configurations": "compare", "fair_pairs": "compare", "trend_fits": "compare", "pareto_mask": "pareto",
    "StoreSnapshot": "snapshot", "load_store": "snapshot",
    "cost_model_error": "summary", "knob_columns": "summary", "primary_cost": "summary", "study_objectives": "summary",
}  # fmt: skip


__getattr__ = lazy_exports(__name__, _PUBLIC)


__all__ = sorted(_PUBLIC)
