"""Which trial records belong to the study as it now stands.

A store keeps every record it ever wrote; after a grid shrinks or the base config changes,
some of them are no longer trials of the study (``study.yaml`` in the store is the study as
last run). Their ids are computed exactly as the runner does: the study's points
(``sweeper.study.space.points``), resolved by ``Study.trial_config`` and hashed by ``sweeper.store.local.trial_id``:
what ``sweeper.tune.trainable.trial_id_for`` does (its CPU-only device override is not hashed), without
importing Ray or the trainer. Optuna studies have no
fixed point list, so a record of theirs is current when its own sweep point, under the
current study, still gives its id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Membership:
    current: pd.Series  # bool per results row
    note: str | None = None  # why membership could not be checked (then every row counts as current)
    unchecked: bool = False  # no current study to check against (the note says why)
    plan: "Plan | None" = None  # how many trials the current study has, and which of them started

    @property
    def stale(self) -> pd.Series:
        return ~self.current


@dataclass(frozen=True)
class Plan:
    """The current study's trials as planned, against which a store is complete or partial."""

    planned: int  # trials of a complete run (grid/random: its unique points; Optuna: num_samples)
    ids: frozenset[str] | None  # their ids, where known in advance (grid/random)
    started: frozenset[str]  # ids with a checkpoint in the store (a trial that began training)

    def interrupted(self, recorded: set[str]) -> int:
        """Planned trials that started training but have no record: stopped mid-run (Ctrl-C, a killed driver)."""
        started = self.started - recorded
        return len(started & self.ids if self.ids is not None else started)


def current_trial_ids(store_dir: Path) -> tuple[set[str] | None, str | None]:
    """(ids of the current study's trials, None) or (None, why they cannot be known)."""
    from sweeper.study.space import points
    from sweeper.store.local import Store, trial_id
    from sweeper.study.load import load_study
    from sweeper.study.model import StudyError

    path = Path(store_dir) / "study.yaml"
    if not path.exists():
        return None, "the store has no study.yaml"
    try:
        study = load_study(path)
    except StudyError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        return None, f"its study.yaml does not validate ({first})"
    except Exception as exc:  # an unreadable study must not stop the report
        return None, f"its study.yaml cannot be read ({type(exc).__name__}: {exc})"
    def id_of(point: dict) -> str:
        return trial_id(study.trial_config(point).to_dict())

    if study.search.algorithm in ("grid", "random"):
        try:
            return {id_of(point) for point in points(study)}, None
        except Exception as exc:  # a point today's trainer config refuses (an older study)
            return None, f"its points do not resolve to trial configs ({type(exc).__name__}: {exc})"
    keys = set(study.space)
    ids = set()
    for record in Store(Path(store_dir)).records():
        point = record.get("point")
        if not isinstance(point, dict) or set(point) - {"seed"} != keys or point.get("seed") not in study.seeds:
            continue
        try:
            if id_of(point) == record.get("trial_id"):
                ids.add(str(record["trial_id"]))
        except Exception:  # a point the current config no longer accepts is not in the study
            continue
    return ids, None


def membership(results: pd.DataFrame, ids: set[str] | None, why: str | None = None, plan: Plan | None = None) -> Membership:
    """Split ``results`` rows into the current study's trials and the others."""
    if ids is None:
        return Membership(pd.Series(True, index=results.index),
                          f"Membership in the current study was not checked: {why}." if why else None, unchecked=True, plan=plan)
    current = results["trial_id"].astype(str).isin(ids)
    if len(results) and not current.any():
        return Membership(pd.Series(True, index=results.index),
                          f"None of the {len(results)} records has a trial id of the current study (written by "
                          "another results version of the trainer, or for another study); all are shown.", plan=plan)
    return Membership(current, plan=plan)


def study_plan(store_dir: Path) -> Plan | None:
    """The current study's plan (None when its study.yaml does not validate: membership says why)."""
    from sweeper.study.plan import is_sampled, planned_trials, point_trial_id, unique_points
    from sweeper.study.load import load_study

    try:
        study = load_study(Path(store_dir) / "study.yaml")
        ids = None if is_sampled(study) else frozenset(point_trial_id(study, p) for p in unique_points(study))
        planned = planned_trials(study)
    except Exception:  # an unreadable or older study must not stop the report; current_trial_ids says why
        return None
    ray_dir = Path(store_dir) / "ray"
    started = frozenset(p.parent.name for p in ray_dir.glob("*/*/checkpoint_*")) if ray_dir.is_dir() else frozenset()
    return Plan(planned, ids, started)
