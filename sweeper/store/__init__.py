"""A study's store: its records, checkpoints and tables in a local folder (`local.Store`) or an object
store (`object_store.ObjectStore`), who may write it (`claim`, `lease`), and what it already answers (`run_summary`)."""

from sweeper import lazy_exports

_PUBLIC = {"Store": "local", "StoreError": "local", "store_root": "local", "trial_id": "local", "ObjectStore": "object_store", "open_store": "object_store", "results_frame": "results", "write_tables": "results", "nothing_to_run": "run_summary", "RunSummary": "run_summary"}  # fmt: skip
__getattr__ = lazy_exports(__name__, _PUBLIC)

__all__ = sorted(_PUBLIC)
