"""A study file read, checked and expanded: `load_study` runs the checks in order and returns a frozen
`Study`; `space` expands it into points, `plan` into the trials a run launches. Nothing here imports torch or Ray."""

from sweeper import lazy_exports

_PUBLIC = {"load_study": "load", "Study": "model", "StudyError": "model", "ResolutionSchedule": "resolution_schedule", "parse_overrides": "overrides", "points": "space", "planned_trials": "plan", "pending_trials": "plan", "unique_points": "plan"}  # fmt: skip
__getattr__ = lazy_exports(__name__, _PUBLIC)

__all__ = sorted(_PUBLIC)
