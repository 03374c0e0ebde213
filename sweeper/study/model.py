"""The validated study: `Study`, the frozen configs it is made of, and `StudyError`.

`sweeper.study.load.load_study` builds these from a YAML file; everything downstream (expansion,
estimates, the run, the report) reads them and never the YAML.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from s3l_core.config import TrialConfig, apply_overrides
from sweeper.study.yaml_reader import StudyProblem


ENUMERATED = ("grid", "choice")  # the SpaceSpec kinds that list their values (the others are ranges)


@dataclass(frozen=True)
class SpaceSpec:
    """One `space` entry: `kind` is grid, choice, uniform, loguniform or int; `values` the
    listed values (grid, choice) or `(lo, hi)` (distributions)."""

    kind: str
    values: tuple[Any, ...]

    def to_dict(self) -> dict[str, list[Any]]:
        return {self.kind: copy.deepcopy(list(self.values))}


@dataclass(frozen=True)
class SearchConfig:
    algorithm: str = "grid"
    num_samples: int = 1
    seed: int = 0


@dataclass(frozen=True)
class SchedulerConfig:
    type: str = "none"
    grace_period: int = 1
    reduction_factor: float = 3


@dataclass(frozen=True)
class Resources:
    cpu: float = 1
    gpu: float = 0


@dataclass(frozen=True)
class Budget:
    gpu_hours: float | None = None
    pflops: float | None = None


@dataclass(frozen=True)
class FailureConfig:
    max_retries: int = 2


@dataclass(frozen=True)
class ClusterConfig:
    address: str | None = None


@dataclass(frozen=True)
class Study:
    """A validated study. `base_trial` is the raw `trial:` mapping with `dataset` merged
    in; a point from `sweeper.study.space` applied to it gives one trial's config."""

    path: str
    name: str
    description: str
    dataset: str
    base_trial: dict[str, Any]
    space: dict[str, SpaceSpec]
    seeds: tuple[int, ...]
    search: SearchConfig
    objectives: dict[str, str]  # metric -> "max" | "min", most important first
    scheduler: SchedulerConfig
    resources: Resources
    max_concurrent: int
    budget: Budget
    failure: FailureConfig
    cluster: ClusterConfig
    storage: str
    report: str
    loggers: tuple[str, ...] = ("tensorboard",)
    keep: str = "encoder"  # what a finished trial keeps: encoder | checkpoint | none
    warnings: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()  # the `--set KEY=VALUE`s applied to the file, as given; already in every field above

    def trial_config(self, point: dict[str, Any] | None = None) -> TrialConfig:
        """The `TrialConfig` of one point (the base trial when `point` is None)."""
        return TrialConfig.from_dict(apply_overrides(self.base_trial, point or {}))

    def resolved_yaml(self) -> str:
        """The resolved study as the store keeps it (`study.yaml`): `--set`s are already in its
        values, and head it as comments, so that `load_study` reads it unchanged and a reader sees
        what the command line changed."""
        import json

        import yaml

        said = [f"# --set {json.dumps(o, ensure_ascii=True)[1:-1]}\n" for o in self.overrides]  # escaped: a line break in a value must not end the comment
        head = "# resolved with these command-line overrides of the study file:\n" + "".join(said) if said else ""
        return head + yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_dict(self) -> dict[str, Any]:
        """The resolved study, every default filled in; `load_study` accepts it unchanged."""
        budget = {k: v for k, v in dataclasses.asdict(self.budget).items() if v is not None}
        return {
            "name": self.name,
            "description": self.description,
            "dataset": self.dataset,
            "trial": {k: copy.deepcopy(v) for k, v in self.base_trial.items() if k != "dataset"},
            "space": {k: s.to_dict() for k, s in self.space.items()},
            "seeds": list(self.seeds),
            "search": dataclasses.asdict(self.search),
            "objectives": dict(self.objectives),
            "scheduler": dataclasses.asdict(self.scheduler),
            "resources": dataclasses.asdict(self.resources),
            "max_concurrent": self.max_concurrent,
            "budget": budget or None,
            "failure": dataclasses.asdict(self.failure),
            "cluster": dataclasses.asdict(self.cluster),
            "storage": self.storage,
            "report": self.report,
            "loggers": list(self.loggers),
            "keep": self.keep,
        }


class StudyError(Exception):
    """Every problem of a study file at once; `str()` gives one line per problem."""

    def __init__(self, problems: list[StudyProblem], warnings: tuple[str, ...] = ()):
        self.problems = problems
        self.warnings = warnings  # found along the way; the study is refused anyway
        super().__init__("\n".join(str(p) for p in problems))

    def __reduce__(self):  # pickles with its problems (the default would rebuild from the text)
        return type(self), (self.problems, self.warnings)
