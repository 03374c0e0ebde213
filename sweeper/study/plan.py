"""Which trials a study has, and which of them a `run` would launch now: the points of a grid
or random search, each counted once per trial id. Light (no torch, Ray or pandas), so
`status` of a study that never ran answers at once."""

from __future__ import annotations

from typing import Any

from sweeper.study.space import points as sweep_points
from sweeper.store.local import trial_id
from sweeper.study.model import Study


def is_sampled(study: Study) -> bool:
    """Optuna picks its points as results come in: the trials are not known in advance."""
    return study.search.algorithm.startswith("optuna")


def unique_trials(study: Study) -> dict[str, dict[str, Any]]:
    """Trial id -> point for a grid/random study, in sweep order; a point drawn twice is one trial."""
    seen: dict[str, dict[str, Any]] = {}
    for point in sweep_points(study):
        seen.setdefault(point_trial_id(study, point), point)
    return seen


def unique_points(study: Study) -> list[dict[str, Any]]:
    """The grid/random points of a study, a point drawn twice counted once (as `run` does)."""
    return list(unique_trials(study).values())


def point_trial_id(study: Study, point: dict[str, Any]) -> str:
    """The store's id of a sweep point's trial, as `sweeper.tune.trainable.trial_id_for` gives it: the
    id leaves out where a trial runs (`UNHASHED_KEYS`), so the trainable pinning a CPU-only
    trial to the CPU does not change it."""
    return trial_id(study.trial_config(point).to_dict())


def planned_trials(study: Study) -> int:
    """How many trials a complete run of the study has."""
    return study.search.num_samples if is_sampled(study) else len(unique_points(study))


def pending_trials(trials: dict[str, dict[str, Any]], finished_ids: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """(trial id, point) of each of `unique_trials` that a `run` would launch: those without a
    finished record. (The caller keeps `trials`, so it is worked out once: it builds every config.)"""
    return [(tid, p) for tid, p in trials.items() if tid not in finished_ids]


def pending_points(study: Study, finished_ids: set[str]) -> list[dict[str, Any]]:
    """The points a `run` would launch."""
    return [p for _, p in pending_trials(unique_trials(study), finished_ids)]
