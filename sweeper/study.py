"""Study files: the schema, its validation, and the validated `Study`.

`load_study(path)` reads a YAML study (see `docs/studies.md`) and returns a frozen
`Study`, or raises `StudyError` listing every problem at once, each as
`file:line key.path: message`. Nothing is started or written either way.

The schema itself (`STUDY_KEYS`, the checks, the docs tables) is `sweeper.study_schema`.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from s3l_core.config import (
    ConfigError,
    TrialConfig,
    apply_overrides,
    did_you_mean,
)
from s3l_core.dataset_catalog import BUILTIN_SHAPES, IMAGEFOLDER_PREFIX, anchored_dataset_name, check_dataset_name, imagefolder_class_problem
from sweeper.space import ENUMERATED
from sweeper.study_schema import (
    EPOCH_METRICS,
    KEY_BY_PATH,
    KNOBS,
    LEAF_KNOBS,
    OBJECTIVE_METRICS,
    REQUIRED,
    SECTIONS,
    SPEC_KINDS,
    TOP_LEVEL_KEYS,
    is_int,
    is_number,
)
from sweeper.study_yaml import StudyProblem, YamlDocument, load_yaml

__all__ = [
    "Budget", "ClusterConfig", "FailureConfig", "Resources", "SchedulerConfig", "SearchConfig",
    "SpaceSpec", "Study", "StudyError", "StudyProblem", "load_study",
]

# Caps that keep a study runnable and `validate`/`estimate` fast for anything accepted.
MAX_TRIALS = 10_000
MAX_RETRIES = 10  # a trial that failed this often will fail again
MAX_SEED = 2**31 - 1  # what numpy, torch and parquet's int columns all take

# ------------------------------------------------------------------------------ the Study


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
    in; a point from `sweeper.space` applied to it gives one trial's config."""

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
    warnings: tuple[str, ...] = ()

    def trial_config(self, point: dict[str, Any] | None = None) -> TrialConfig:
        """The `TrialConfig` of one point (the base trial when `point` is None)."""
        return TrialConfig.from_dict(apply_overrides(self.base_trial, point or {}))

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
        }


class StudyError(Exception):
    """Every problem of a study file at once; `str()` gives one line per problem."""

    def __init__(self, problems: list[StudyProblem], warnings: tuple[str, ...] = ()):
        self.problems = problems
        self.warnings = warnings  # found along the way; the study is refused anyway
        super().__init__("\n".join(str(p) for p in problems))

    def __reduce__(self):  # pickles with its problems (the default would rebuild from the text)
        return type(self), (self.problems, self.warnings)


# ------------------------------------------------------------------------------ validation


def load_study(path: str | Path, *, cluster_resources: dict[str, float] | None = None) -> Study:
    """Load and validate a study file; raise `StudyError` with every problem found.

    `cluster_resources` (Ray's `{"CPU": 2, "GPU": 0}`) adds a check that one trial fits the
    cluster. Warnings (e.g. upsampling) are returned on `Study.warnings`.
    """
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise StudyError(doc.problems)
    validator = _Validator(str(path), doc, cluster_resources)
    study = validator.run()
    problems = list(doc.problems)
    for p in validator.problems:  # a value already rejected while loading is not reported twice
        if p in problems or any(p.key_path == r or p.key_path.startswith((r + ".", r + "[")) for r in doc.rejected if r):
            continue
        problems.append(p)
    if problems or study is None:
        problems.sort(key=lambda p: p.line)
        raise StudyError(problems, tuple(str(w) for w in sorted(validator.warnings, key=lambda w: w.line)))
    return study


class _Validator:
    def __init__(self, file: str, doc: YamlDocument, cluster: dict[str, float] | None):
        self.file = file
        self.doc = doc
        self.data: dict[Any, Any] = doc.data
        self.cluster = cluster
        self.problems: list[StudyProblem] = []
        self.warnings: list[StudyProblem] = []

    # ----------------------------------------------------------------- reporting

    def problem(self, path: str, message: str) -> None:
        self.problems.append(StudyProblem(self.file, self.doc.line_of(path), path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(StudyProblem(self.file, self.doc.line_of(path), path, message))

    # ----------------------------------------------------------------- generic keys

    def section(self, name: str) -> dict[Any, Any]:
        """A mapping section (absent or null: {}), its unknown keys reported."""
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            keys = SECTIONS.get(name)
            hint = f" with keys {', '.join(keys)}" if keys else ""
            self.problem(name, f"expected a mapping{hint}, got {value!r}")
            return {}
        if name in SECTIONS:
            for key in value:
                if key not in SECTIONS[name]:
                    self.problem(f"{name}.{key}", f"unknown key '{key}'" + did_you_mean(str(key), SECTIONS[name]))
        return value

    def value(self, path: str, container: dict[Any, Any]) -> Any:
        """The checked value of a documented key, its default when absent or invalid."""
        doc = KEY_BY_PATH[path]
        key = path.rsplit(".", 1)[-1]
        if key not in container:
            if doc.default is REQUIRED:
                self.problem(path, f"is required ({doc.allowed})")
                return None
            return copy.deepcopy(doc.default)
        value = _integral(container[key]) if doc.type == "integer" else container[key]
        message = doc.check(value) if doc.check else None
        if message:
            self.problem(path, message)
            return None if doc.default is REQUIRED else copy.deepcopy(doc.default)
        return value

    # ----------------------------------------------------------------- the whole file

    def run(self) -> Study | None:
        self.check_finite(self.data, "")
        for key in self.data:
            if key not in TOP_LEVEL_KEYS:
                self.problem(str(key), f"unknown key '{key}'" + did_you_mean(str(key), TOP_LEVEL_KEYS))
        name = self.value("name", self.data)
        description = self.value("description", self.data)
        dataset = self.check_dataset_key()
        base, config = self.check_trial(dataset)
        seeds = self.check_seeds()
        search = self.check_search()
        space = self.check_space(base, search)
        objectives = self.check_objectives(search)
        scheduler = self.check_scheduler(objectives)
        resources = self.check_resources(config)
        max_concurrent = self.value("max_concurrent", self.data)
        budget = self.check_budget()
        failure = self.check_failure()
        cluster = ClusterConfig(self.value("cluster.address", self.section("cluster")))
        storage = self.value("storage", self.data)
        report = self.value("report", self.data)
        loggers = self.value("loggers", self.data)
        if budget.gpu_hours is not None and resources.gpu == 0:
            self.problem("budget.gpu_hours", "the trials use no GPU (resources.gpu is 0), so no GPU-hours are ever spent; "
                         "budget a CPU study in pflops (train + eval FLOPs, see `estimate`)")
        self.check_trial_count(space, seeds, search)
        if not self.problems and search.algorithm == "grid":
            self.check_grid_combinations(base, space)
        if isinstance(dataset, str):
            self.check_upsampling(dataset, config, space)
            if config is not None:
                self.check_effects(dataset, base, config, space)
        if config is not None and "finetune_top1" in (objectives or {}) and config.eval.finetune is None and "eval.finetune" not in space:
            self.problem("objectives.finetune_top1", "needs fine-tuning: set trial.eval.finetune, e.g. {epochs: 10, lr: 0.05}")
        if self.problems or self.doc.problems:
            return None
        return Study(
            path=self.file, name=name, description=description, dataset=dataset, base_trial=base, space=space,
            seeds=seeds, search=search, objectives=objectives, scheduler=scheduler, resources=resources,
            max_concurrent=max_concurrent, budget=budget, failure=failure, cluster=cluster, storage=storage,
            report=report, loggers=tuple(loggers), warnings=tuple(str(w) for w in sorted(self.warnings, key=lambda w: w.line)),
        )

    def check_dataset_key(self) -> str | None:
        dataset = self.value("dataset", self.data)
        if dataset is None:
            return None
        if not isinstance(dataset, str):
            self.problem("dataset", f"{dataset!r} is not a string")
            return None
        dataset = anchored_dataset_name(dataset, Path(self.file).parent)
        message = check_dataset_name(dataset) or _imagefolder_problem(dataset)
        if message:
            self.problem("dataset", message)
        return dataset

    # ----------------------------------------------------------------- anywhere in the file

    def check_finite(self, value: Any, path: str) -> None:
        """`.inf` and `.nan` are no valid value of any key; reported once, at their own line."""
        if isinstance(value, float) and not math.isfinite(value):
            self.doc.problems.append(StudyProblem(self.file, self.doc.line_of(path), path, f"{value} is not a finite number"))
            self.doc.rejected.add(path)  # later checks of this key stay quiet
        elif isinstance(value, dict):
            for key, item in value.items():
                self.check_finite(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.check_finite(item, f"{path}[{i}]")

    def check_failure(self) -> FailureConfig:
        retries = self.value("failure.max_retries", self.section("failure"))
        if is_int(retries) and retries > MAX_RETRIES:
            self.problem("failure.max_retries", f"{retries} retries: at most {MAX_RETRIES} (crashes are retried; config and data errors fail at once)")
            retries = MAX_RETRIES
        return FailureConfig(retries)

    def check_trial_count(self, space: dict[str, SpaceSpec], seeds: tuple[int, ...], search: SearchConfig) -> None:
        """Counted, not enumerated, so a huge grid is refused at once."""
        if search.algorithm == "grid":
            count = math.prod(len(s.values) for s in space.values() if s.kind in ENUMERATED) * len(seeds)
            if count > MAX_TRIALS:
                self.problem("space", f"the grid makes {count:,} trials (every combination, times {len(seeds)} seeds); "
                             f"a study may have at most {MAX_TRIALS:,}: split it into several studies")
        elif search.num_samples > MAX_TRIALS:
            self.problem("search.num_samples", f"{search.num_samples:,} samples: a study may have at most {MAX_TRIALS:,} trials")

    # ----------------------------------------------------------------- trial

    def check_trial(self, dataset: str | None) -> tuple[dict[str, Any], TrialConfig | None]:
        raw = self.data.get("trial")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problem("trial", f"expected a mapping of trial keys, got {raw!r}")
            raw = {}
        if "dataset" in raw:
            self.problem("trial.dataset", "set the dataset with the top-level `dataset` key")
        if "seed" in raw:
            self.problem("trial.seed", "set seeds with the top-level `seeds` list")
        base = {"dataset": dataset} if isinstance(dataset, str) else {}
        base.update((k, copy.deepcopy(v)) for k, v in raw.items() if k not in ("dataset", "seed"))
        data_dir = raw.get("data_dir")
        if isinstance(data_dir, str) and data_dir.strip():
            message = _data_dir_problem(data_dir)
            if message:
                self.problem("trial.data_dir", message)
        try:
            return base, TrialConfig.from_dict(base)
        except ConfigError as exc:
            for p in exc.problems:
                self.problem("dataset" if p.path == "dataset" else f"trial.{p.path}", p.message)
            return base, None

    # ----------------------------------------------------------------- seeds

    def check_seeds(self) -> tuple[int, ...]:
        if "seeds" not in self.data:
            return (0,)
        seeds = self.data["seeds"]
        if not isinstance(seeds, list) or not seeds:
            self.problem("seeds", f"expected a non-empty list of seeds such as [0, 1, 2], got {seeds!r}")
            return (0,)
        ok = True
        seeds = [_integral(s) for s in seeds]
        for i, s in enumerate(seeds):
            if not is_int(s) or not 0 <= s <= MAX_SEED:
                self.problem(f"seeds[{i}]", f"{s!r} is not an integer from 0 to {MAX_SEED}")
                ok = False
        for i, s in enumerate(seeds):
            if is_int(s) and seeds.index(s) != i:
                self.problem(f"seeds[{i}]", f"seed {s} is listed twice")
                ok = False
        return tuple(seeds) if ok else (0,)

    # ----------------------------------------------------------------- search

    def check_search(self) -> SearchConfig:
        section = self.section("search")
        algorithm = self.value("search.algorithm", section) or "grid"
        if "num_samples" in section:
            num_samples = self.value("search.num_samples", section)
            if algorithm == "grid" and num_samples and num_samples > 1:
                self.warn("search.num_samples", "grid search repeats identical trials, and identical configs are "
                          "reused, not re-run: add seeds to repeat a configuration")
        else:
            num_samples = 1
            if algorithm != "grid":
                self.problem("search", f"num_samples is required for {algorithm} search (how many configurations to try)")
        seed = self.value("search.seed", section)
        if is_int(seed) and seed > MAX_SEED:
            self.problem("search.seed", f"{seed} is not an integer from 0 to {MAX_SEED}")
            seed = 0
        return SearchConfig(algorithm, num_samples or 1, seed)

    # ----------------------------------------------------------------- space

    def check_space(self, base: dict[str, Any], search: SearchConfig) -> dict[str, SpaceSpec]:
        raw = self.data.get("space")
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem("space", f"expected a mapping of dotted trial keys to grids or distributions, got {raw!r}")
            return {}
        space: dict[str, SpaceSpec] = {}
        for knob, entry in raw.items():
            path = f"space.{knob}"
            spec = self.parse_spec(path, entry)
            if not isinstance(knob, str) or knob not in KNOBS:
                if knob == "seed":
                    self.problem(path, "seeds are set with the top-level `seeds` list, not in space")
                else:
                    self.problem(path, f"unknown knob '{knob}'" + did_you_mean(str(knob), LEAF_KNOBS))
                continue
            if spec is None:
                continue
            if spec.kind in ENUMERATED:
                if self.check_values(base, knob, path, spec):
                    space[knob] = spec
            elif self.check_distribution(base, knob, path, spec):
                space[knob] = spec
            if search.algorithm == "grid" and spec.kind not in ENUMERATED:
                self.problem(path, f"{spec.kind} needs search.algorithm random, optuna-tpe or optuna-nsga2; "
                             "grid search enumerates grid and choice entries only")
            if search.algorithm.startswith("optuna") and spec.kind == "grid":
                self.warn(path, f"{search.algorithm} samples grid entries like choice entries; "
                          "it does not try every value")
        return space

    def parse_spec(self, path: str, entry: Any) -> SpaceSpec | None:
        forms = "{grid: [...]}, {choice: [...]}, {uniform: [lo, hi]}, {loguniform: [lo, hi]} or {int: [lo, hi]}"
        if isinstance(entry, list):
            self.problem(path, f"expected one of {forms}, got a bare list (did you mean {{grid: {json.dumps(entry)}}}?)")
            return None
        if not isinstance(entry, dict):
            self.problem(path, f"expected one of {forms}, got {entry!r}; a fixed value belongs under trial:")
            return None
        unknown = [k for k in entry if k not in SPEC_KINDS]
        for k in unknown:
            self.problem(f"{path}.{k}", f"unknown kind '{k}'" + did_you_mean(str(k), list(SPEC_KINDS)))
        if unknown:
            return None
        if len(entry) != 1:
            self.problem(path, f"expected exactly one of {forms}, got {len(entry)} keys")
            return None
        ((kind, values),) = entry.items()
        kpath = f"{path}.{kind}"
        if kind in ENUMERATED:
            if not isinstance(values, list):
                self.problem(kpath, f"expected a list of values, got {values!r}")
                return None
            if not values:
                self.problem(kpath, f"the {kind} is empty: list at least one value")
                return None
            return SpaceSpec(kind, tuple(values))
        if not isinstance(values, list) or len(values) != 2:
            self.problem(kpath, f"expected [lo, hi], got {values!r}")
            return None
        ok = True
        for i, v in enumerate(values):
            if kind == "int" and not is_int(v):
                self.problem(f"{kpath}[{i}]", f"{v!r} is not an integer")
                ok = False
            elif not is_number(v):
                self.problem(f"{kpath}[{i}]", f"{v!r} is not a number")
                ok = False
        if not ok:
            return None
        lo, hi = values
        if not lo < hi:
            self.problem(kpath, f"lo ({lo}) must be less than hi ({hi})")
            return None
        if kind == "loguniform" and lo <= 0:
            self.problem(f"{kpath}[0]", f"loguniform needs lo > 0, got {lo}")
            return None
        return SpaceSpec(kind, (lo, hi) if kind == "int" else (float(lo), float(hi)))

    def check_values(self, base: dict[str, Any], knob: str, path: str, spec: SpaceSpec) -> bool:
        ok = True
        seen: dict[str, int] = {}
        for i, v in enumerate(spec.values):
            vpath = f"{path}.{spec.kind}[{i}]"
            canonical = json.dumps(v, sort_keys=True, default=str)
            if canonical in seen:
                self.problem(vpath, f"{v!r} is listed twice (also at [{seen[canonical]}])")
                ok = False
                continue
            seen[canonical] = i
            ok = self.check_value(base, knob, vpath, v) and ok
        return ok

    def check_value(self, base: dict[str, Any], knob: str, vpath: str, value: Any) -> bool:
        """Does `value` at `knob` give a valid trial? Problems are reported at `vpath`."""
        if knob == "dataset" and isinstance(value, str):
            message = check_dataset_name(value) or _imagefolder_problem(value)
            if message:
                self.problem(vpath, message)
                return False
        if knob == "data_dir" and isinstance(value, str):
            message = _data_dir_problem(value)
            if message:
                self.problem(vpath, message)
                return False
        try:
            TrialConfig.from_dict(apply_overrides(base, {knob: value}))
        except ConfigError as exc:
            ok = True
            for p in exc.problems:
                if p.path == knob or p.path.startswith((knob + ".", knob + "[")):
                    self.problem(vpath + p.path[len(knob):], p.message)
                    ok = False
            return ok
        return True

    def check_distribution(self, base: dict[str, Any], knob: str, path: str, spec: SpaceSpec) -> bool:
        hint = KNOBS[knob]
        accepts = set(typing.get_args(hint)) if typing.get_origin(hint) in (Union, types.UnionType) else {hint}
        if float not in accepts and int not in accepts:
            self.problem(path, f"{knob} is not numeric: use {{grid: [...]}} or {{choice: [...]}}")
            return False
        if spec.kind in ("uniform", "loguniform") and float not in accepts:
            self.problem(path, f"{spec.kind} draws real numbers but {knob} takes an integer: use {{int: [lo, hi]}}")
            return False
        lo_ok = self.check_value(base, knob, f"{path}.{spec.kind}[0]", spec.values[0])
        hi_ok = self.check_value(base, knob, f"{path}.{spec.kind}[1]", spec.values[1])
        return lo_ok and hi_ok

    def check_grid_combinations(self, base: dict[str, Any], space: dict[str, SpaceSpec], limit: int = 2_000) -> None:
        """Values valid one at a time can clash together (e.g. stage epochs and epochs)."""
        keys = list(space)
        if len(keys) < 2:
            return
        bad = 0
        for combo in itertools.islice(itertools.product(*(space[k].values for k in keys)), limit):
            point = dict(zip(keys, combo))
            try:
                TrialConfig.from_dict(apply_overrides(base, point))
            except ConfigError as exc:
                self.problem("space", f"the combination {json.dumps(point)} is not a valid trial: {exc}")
                bad += 1
                if bad == 3:
                    return

    # ----------------------------------------------------------------- objectives, scheduler

    def check_objectives(self, search: SearchConfig) -> dict[str, str]:
        raw = self.data.get("objectives")
        if "objectives" not in self.data:
            self.problem("objectives", "is required, e.g. {knn_top1: max, train_pflops: min}")
            return {}
        if not isinstance(raw, dict) or not raw:
            self.problem("objectives", f"expected a mapping of metric -> max or min, such as {{knn_top1: max}}, got {raw!r}")
            return {}
        out = {}
        for metric, mode in raw.items():
            path = f"objectives.{metric}"
            if metric not in OBJECTIVE_METRICS:
                self.problem(path, f"unknown metric '{metric}'" + did_you_mean(str(metric), list(OBJECTIVE_METRICS)))
            elif mode not in ("max", "min"):
                self.problem(path, f"{mode!r} must be max or min")
            else:
                out[metric] = mode
        if search.algorithm == "optuna-tpe" and len(raw) > 1:
            self.warn("objectives", f"optuna-tpe optimises the first objective only ({next(iter(raw))}); "
                      "use optuna-nsga2 for several")
        if search.algorithm == "optuna-nsga2" and len(raw) == 1:
            self.warn("objectives", "optuna-nsga2 is for several objectives; with one, optuna-tpe is usually better")
        return out

    def check_scheduler(self, objectives: dict[str, str]) -> SchedulerConfig:
        section = self.section("scheduler")
        scheduler = SchedulerConfig(
            self.value("scheduler.type", section),
            self.value("scheduler.grace_period", section),
            self.value("scheduler.reduction_factor", section),
        )
        first = next(iter(objectives), None)
        if scheduler.type == "asha" and first is not None and first not in EPOCH_METRICS:
            self.problem("scheduler.type", f"asha stops trials on a metric reported every epoch, but the first "
                         f"objective '{first}' is only known at the end: put {' or '.join(EPOCH_METRICS)} first")
        return scheduler

    # ----------------------------------------------------------------- resources, budget

    def check_resources(self, config: TrialConfig | None) -> Resources:
        section = self.section("resources")
        cpu = self.value("resources.cpu", section)
        gpu = self.value("resources.gpu", section)
        if "gpu" in section and is_number(gpu) and gpu > 1 and not float(gpu).is_integer():
            self.problem("resources.gpu", f"{gpu} GPUs: above 1 a trial takes whole GPUs")
        if self.cluster is not None:
            have_cpu = float(self.cluster.get("CPU", 0) or 0)
            have_gpu = float(self.cluster.get("GPU", 0) or 0)
            if is_number(cpu) and cpu > have_cpu:
                self.problem("resources.cpu", f"asks for {cpu:g} CPU per trial but the cluster has {have_cpu:g} CPUs")
            if is_number(gpu) and gpu > have_gpu:
                self.problem("resources.gpu", f"asks for {gpu:g} GPU per trial but the cluster has {have_gpu:g} GPUs")
        if config is not None and gpu == 0 and config.device.startswith("cuda"):
            self.problem("trial.device", f"is '{config.device}' but resources.gpu is 0: a trial would get no GPU")
        return Resources(cpu, gpu)

    def check_budget(self) -> Budget:
        section = self.section("budget")
        budget = Budget(self.value("budget.gpu_hours", section), self.value("budget.pflops", section))
        if "gpu_hours" in section and "pflops" in section:
            self.problem("budget", "give either gpu_hours or pflops, not both")
        return budget

    # ----------------------------------------------------------------- warnings

    def check_effects(self, dataset: str, base: dict[str, Any], config: TrialConfig, space: dict[str, SpaceSpec]) -> None:
        """Warn about every setting the study makes that cannot take effect (no silent no-ops)."""
        from s3l_core.effects import ineffective_settings

        channels = BUILTIN_SHAPES[dataset].channels if dataset in BUILTIN_SHAPES else None
        set_keys = {k: f"trial.{k}" for k in _dotted_keys(base)} | {k: f"space.{k}" for k in space}
        methods = space["method"].values if "method" in space and space["method"].kind in ENUMERATED else [config.method]
        resolutions = [r for r, _ in config.stage_plan()]
        for method in dict.fromkeys(m for m in methods if isinstance(m, str)):
            for key, why in ineffective_settings(set_keys, method, channels, resolutions):
                self.warn(set_keys[key], why)

    def check_upsampling(self, dataset: str, config: TrialConfig | None, space: dict[str, SpaceSpec]) -> None:
        native = BUILTIN_SHAPES[dataset].native_size if dataset in BUILTIN_SHAPES else None
        if native is None:
            return

        def check(path: str, size: int | None) -> None:
            if size is not None and size > native:
                self.warn(path, f"{size} px is larger than {dataset}'s {native} px images: they will be upsampled")

        if config is not None:
            check("trial.resolution", config.max_resolution)
            check("trial.eval.resolution", config.eval.resolution)
        for knob in ("resolution", "eval.resolution"):
            spec = space.get(knob)
            if spec is None:
                continue
            if spec.kind in ENUMERATED:
                for i, v in enumerate(spec.values):
                    check(f"space.{knob}.{spec.kind}[{i}]", _largest(v))
            else:
                check(f"space.{knob}.{spec.kind}[1]", int(spec.values[1]))


def _dotted_keys(mapping: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in mapping.items():
        out.append(f"{prefix}{key}")
        if isinstance(value, dict):
            out.extend(_dotted_keys(value, f"{prefix}{key}."))
    return out


def _integral(value: Any) -> Any:
    """2.0 -> 2, as trial keys (`epochs: 2.0`) accept it; anything else unchanged."""
    return int(value) if isinstance(value, float) and math.isfinite(value) and value.is_integer() else value


def _data_dir_problem(data_dir: str) -> str | None:
    """Checked on the driver: on a cluster, data_dir must be mounted at the same path everywhere."""
    if "\0" in data_dir:
        return "contains a NUL byte"
    if not Path(data_dir).expanduser().is_dir():
        return f"folder {data_dir} does not exist on this machine"
    return None


def _imagefolder_problem(dataset: str) -> str | None:
    if not dataset.startswith(IMAGEFOLDER_PREFIX):
        return None
    problem = imagefolder_class_problem(Path(dataset[len(IMAGEFOLDER_PREFIX) :]).expanduser())
    return f"dataset {dataset!r}: {problem}" if problem else None


def _largest(resolution: Any) -> int | None:
    if is_int(resolution):
        return resolution
    if isinstance(resolution, list):
        sizes = [s.get("resolution") for s in resolution if isinstance(s, dict)]
        return max((s for s in sizes if is_int(s)), default=None)
    return None

