"""Checks of what one trial is: the `dataset` key, the `trial:` mapping, and the warnings about
settings that cannot take effect (no silent no-ops) or images that will be upsampled."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from s3l_core.config import ConfigError, TrialConfig
from s3l_core.dataset_catalog import BUILTIN_SHAPES, IMAGEFOLDER_PREFIX, anchored_dataset_name, check_dataset_name, imagefolder_class_problem
from s3l_core.effects import ineffective_settings
from s3l_core.quoting import brief
from sweeper.study.checker import StudyChecker
from sweeper.study.model import ENUMERATED, SpaceSpec
from sweeper.study.schema import is_int


def check_dataset_key(c: StudyChecker) -> str | None:
    dataset = c.value("dataset", c.data)
    if dataset is None:
        return None
    if not isinstance(dataset, str):
        c.problem("dataset", f"{brief(dataset)} is not a string")
        return None
    dataset = anchored_dataset_name(dataset, Path(c.file).parent)
    message = dataset_problem(dataset)
    if message:
        c.problem("dataset", message)
    return dataset


def check_trial(c: StudyChecker, dataset: str | None) -> tuple[dict[str, Any], TrialConfig | None]:
    """The base trial mapping (`dataset` merged in) and its config, None when it is invalid."""
    raw = c.data.get("trial")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        c.problem("trial", f"expected a mapping of trial keys, got {brief(raw)}")
        raw = {}
    if "dataset" in raw:
        c.problem("trial.dataset", "set the dataset with the top-level `dataset` key")
    if "seed" in raw:
        c.problem("trial.seed", "set seeds with the top-level `seeds` list")
    base = {"dataset": dataset} if isinstance(dataset, str) else {}
    base.update((k, copy.deepcopy(v)) for k, v in raw.items() if k not in ("dataset", "seed"))
    data_dir = raw.get("data_dir")
    if isinstance(data_dir, str) and data_dir.strip():
        message = data_dir_problem(data_dir)
        if message:
            c.problem("trial.data_dir", message)
    try:
        return base, TrialConfig.from_dict(base)
    except ConfigError as exc:
        for p in exc.problems:
            c.problem("dataset" if p.path == "dataset" else f"trial.{p.path}", p.message)
        return base, None


def data_dir_problem(data_dir: str) -> str | None:
    """Checked on the driver: on a cluster, data_dir must be mounted at the same path everywhere."""
    if "\0" in data_dir:
        return "contains a NUL byte"
    if not Path(data_dir).expanduser().is_dir():
        return f"folder {data_dir} does not exist on this machine"
    return None


def dataset_problem(dataset: str) -> str | None:
    """What is wrong with a dataset name, or with the folder an `imagefolder:` name points at."""
    problem = check_dataset_name(dataset)
    if problem or not dataset.startswith(IMAGEFOLDER_PREFIX):
        return problem
    problem = imagefolder_class_problem(Path(dataset[len(IMAGEFOLDER_PREFIX) :]).expanduser())
    return f"dataset {brief(dataset)}: {problem}" if problem else None


# ------------------------------------------------------------------------------ warnings


def check_effects(c: StudyChecker, dataset: str, base: dict[str, Any], config: TrialConfig, space: dict[str, SpaceSpec]) -> None:
    """Warn about every setting the study makes that cannot take effect (no silent no-ops)."""
    channels = BUILTIN_SHAPES[dataset].channels if dataset in BUILTIN_SHAPES else None
    set_keys = {k: f"trial.{k}" for k in _dotted_keys(base)} | {k: f"space.{k}" for k in space}
    methods = space["method"].values if "method" in space and space["method"].kind in ENUMERATED else [config.method]
    native = BUILTIN_SHAPES[dataset].native_size if dataset in BUILTIN_SHAPES else config.image_size
    for method in dict.fromkeys(m for m in methods if isinstance(m, str)):
        for key, why in ineffective_settings(set_keys, method, channels, native):
            c.warn(set_keys[key], why)


def check_upsampling(c: StudyChecker, dataset: str, config: TrialConfig | None, space: dict[str, SpaceSpec]) -> None:
    native = BUILTIN_SHAPES[dataset].native_size if dataset in BUILTIN_SHAPES else None
    if native is None:
        return

    def check(path: str, size: int | None) -> None:
        if size is not None and size > native:
            c.warn(path, f"{size} px is larger than {dataset}'s {native} px images: they will be upsampled")

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


def _largest(resolution: Any) -> int | None:
    """The largest size of a resolution value: an int, or a list of stages."""
    if is_int(resolution):
        return resolution
    if isinstance(resolution, list):
        sizes = [s.get("resolution") for s in resolution if isinstance(s, dict)]
        return max((s for s in sizes if is_int(s)), default=None)
    return None
