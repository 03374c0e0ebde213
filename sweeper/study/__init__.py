"""A study file read, checked and expanded: `load_study` runs the checks in order and returns a frozen
`Study`; `space` expands it into points, `plan` into the trials a run launches. Nothing here imports torch or Ray."""

from sweeper import lazy_exports

__getattr__ = lazy_exports(__name__, {"load_study": "load", "Study": "model", "StudyError": "model", "ResolutionSchedule": "resolution_schedule", "parse_overrides": "overrides", "points": "space", "planned_trials": "plan", "pending_trials": "plan", "unique_points": "plan"})  # fmt: skip

__all__ = [
    "ResolutionSchedule",
    "Study",
    "StudyError",
    "load_study",
    "parse_overrides",
    "pending_trials",
    "planned_trials",
    "points",
    "unique_points",
]
