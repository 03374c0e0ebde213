"""The Ray side, and the only package that imports Ray: `runner` drives a study through one Tune run,
`trainable` trains a trial on a worker, `study_view` and `live_view` show it, `cluster` and `loopback` connect."""

from sweeper import lazy_exports

_PUBLIC = {"run_study": "runner", "StudyInterrupted": "runner", "run_trial": "trainable", "start_local_ray": "loopback"}  # fmt: skip
__getattr__ = lazy_exports(__name__, _PUBLIC)

__all__ = sorted(_PUBLIC)
