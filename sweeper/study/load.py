"""Study files: `load_study(path)` reads a YAML study (see `docs/studies.md`) and returns a
frozen `Study`, or raises `StudyError` listing every problem at once, each as
`file:line key.path: message`. Nothing is started or written either way.

This module runs the checks in order and builds the `Study`; the pieces live apart:
`sweeper/study/yaml_reader.py` reads the file, `sweeper/study/schema.py` describes every key,
`sweeper/study/checker.py` collects problems, `sweeper/study/trial_checks.py`,
`sweeper/study/space_checks.py` and `sweeper/study/run_checks.py` check the file's parts,
and `sweeper/study/model.py` holds the `Study` and its configs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from s3l_core.config import did_you_mean
from sweeper.study.checker import StudyChecker
from sweeper.study.model import ClusterConfig, Study, StudyError
from sweeper.study.run_checks import (
    check_budget, check_failure, check_locations, check_objectives, check_resources, check_scheduler, check_search,
)
from sweeper.study.schema import TOP_LEVEL_KEYS
from sweeper.study.space_checks import check_grid_combinations, check_seeds, check_space, check_trial_count
from sweeper.study.trial_checks import check_dataset_key, check_effects, check_trial, check_upsampling
from sweeper.study.overrides import Override, apply_overrides
from sweeper.study.yaml_reader import load_yaml

# The entry's result and error, so `from sweeper.study.load import load_study, Study, StudyError`
# keeps working (sweeper/tune/runner.py and sweeper/store/local.py import `Study` from here).
__all__ = ["Study", "StudyError", "load_study"]


def load_study(path: str | Path, *, cluster_resources: dict[str, float] | None = None, check_cost: bool = False,
               overrides: tuple[Override, ...] = ()) -> Study:
    """Load and validate a study file; raise `StudyError` with every problem found.

    `overrides` (`--set KEY=VALUE`, `sweeper/study/overrides.py`) edit the file's mapping first, so
    they are checked as the edited file would be; they are kept on `Study.overrides`.

    `cluster_resources` (Ray's `{"CPU": 2, "GPU": 0}`) adds a check that one trial fits the
    cluster; `check_cost` one that no trial is predicted above the cost ceiling
    (`sweeper/study/cost_checks.py`; it imports torch). Warnings (e.g. upsampling) are returned on `Study.warnings`.
    """
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise StudyError(doc.problems)
    apply_overrides(doc, str(path), overrides)
    checker = StudyChecker(str(path), doc, cluster_resources)
    study = _validate(checker)
    if study is not None and overrides:
        study = dataclasses.replace(study, overrides=tuple(map(str, overrides)))
    if study is not None and check_cost:
        from sweeper.study.cost_checks import check_trial_cost

        check_trial_cost(checker, study)
    problems = list(doc.problems)
    for p in checker.problems:  # a value already rejected while loading is not reported twice
        if p in problems or any(p.key_path == r or p.key_path.startswith((r + ".", r + "[")) for r in doc.rejected if r):
            continue
        problems.append(p)
    if problems or study is None:
        problems.sort(key=lambda p: p.line)  # a `--set` value's (line 0) first
        raise StudyError(problems, tuple(str(w) for w in sorted(checker.warnings, key=lambda w: w.line)))
    return study


def _validate(c: StudyChecker) -> Study | None:
    """Every check of the file in order; the `Study`, or None when a problem was found."""
    c.check_finite(c.data, "")
    for key in c.data:
        if key not in TOP_LEVEL_KEYS:
            c.problem(str(key), f"unknown key '{key}'" + did_you_mean(str(key), TOP_LEVEL_KEYS))
    name = c.value("name", c.data)
    description = c.value("description", c.data)
    dataset = check_dataset_key(c)
    base, config = check_trial(c, dataset)
    seeds = check_seeds(c)
    search = check_search(c)
    space = check_space(c, base, search)
    objectives = check_objectives(c, search)
    scheduler = check_scheduler(c, objectives)
    resources = check_resources(c, config)
    max_concurrent = c.value("max_concurrent", c.data)
    budget = check_budget(c, resources)
    failure = check_failure(c)
    cluster = ClusterConfig(c.value("cluster.address", c.section("cluster")))
    storage = c.value("storage", c.data)
    report = c.value("report", c.data)
    check_locations(c, storage, report)
    loggers = c.value("loggers", c.data)
    keep = c.value("keep", c.data)
    check_trial_count(c, space, seeds, search)
    if not c.problems and search.algorithm == "grid":
        check_grid_combinations(c, base, space)
    if isinstance(dataset, str):
        check_upsampling(c, dataset, config, space)
        if config is not None:
            check_effects(c, dataset, base, config, space)
    if config is not None and "finetune_top1" in (objectives or {}) and config.eval.finetune is None and "eval.finetune" not in space:
        c.problem("objectives.finetune_top1", "needs fine-tuning: set trial.eval.finetune, e.g. {epochs: 10, lr: 0.05}")
    if config is not None and "linear_top1" in (objectives or {}) and not config.eval.linear_probe and "eval.linear_probe" not in space:
        c.problem("objectives.linear_top1", "needs the linear probe: set trial.eval.linear_probe: true")
    if c.problems or c.doc.problems:
        return None
    return Study(
        path=c.file, name=name, description=description, dataset=dataset, base_trial=base, space=space,
        seeds=seeds, search=search, objectives=objectives, scheduler=scheduler, resources=resources,
        max_concurrent=max_concurrent, budget=budget, failure=failure, cluster=cluster, storage=storage,
        report=report, loggers=tuple(loggers), keep=keep, warnings=tuple(str(w) for w in sorted(c.warnings, key=lambda w: w.line)),
    )
