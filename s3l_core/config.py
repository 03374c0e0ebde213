"""Typed, frozen configuration of one pre-training trial.

`TrialConfig.from_dict` is the single way a plain mapping (CLI flags, a study's `trial:`
block with a sweep point applied) becomes a config: it checks every key and value and
raises `ConfigError` listing every problem with its dotted key path.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from s3l_core.dataset_catalog import check_dataset_name
from s3l_core.quoting import brief
from s3l_core.recipes import RECIPES, head_sizes

METHOD_NAMES = ("simclr", "moco_v2", "byol", "simsiam", "supervised")
DEPTHS = (10, 18, 34, 50)
STEMS = ("auto", "cifar", "imagenet")
OPTIMIZERS = ("sgd", "lars")
DEFAULT_EPOCHS = 50
# Upper limits of the run length and batch, generous for small-scale studies (ImageNet SimCLR runs
# 1,000 epochs at batch 4,096) yet far below what would mean a mistyped value (`epochs: 1e23`).
MAX_EPOCHS = 10_000
MAX_STEPS = 100_000_000
MAX_BATCH_SIZE = 65_536
LR_REFERENCE_BATCH = 256  # optimizer.lr is the rate at this batch; the trainer scales it linearly


@dataclass(frozen=True)
class ConfigProblem:
    """One invalid value: `path` is the dotted key (`backbone.width`)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ValueError):
    """Every problem found in a config at once."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    def __reduce__(self):  # pickle (Ray sends a worker's error to the driver) rebuilds from the problems, not the text
        return type(self), (self.problems,)


@dataclass(frozen=True)
class BackboneConfig:
    depth: int = 18
    width: float = 1.0  # channel multiplier: 1.0 = 64 base channels
    stages: int = 4  # 4, or 3 = S3L's "conv5 removed"
    # auto: from the dataset's native image size, never from a trial's resolution, so every arm
    # of a resolution study has the same architecture.
    stem: str = "auto"


@dataclass(frozen=True)
class Stage:
    """One resolution stage. `epochs` counts epochs; `fraction` is a share of the run length
    (`TrialConfig.epochs` or `TrialConfig.steps`)."""

    resolution: int
    epochs: int | None = None
    steps: int | None = None
    fraction: float | None = None


@dataclass(frozen=True)
class OptimizerConfig:
    """None-valued fields take the method's reference recipe (`s3l_core.recipes`)."""

    name: str | None = None  # sgd | lars
    lr: float | None = None  # at a batch of LR_REFERENCE_BATCH images; scaled linearly with the batch used
    weight_decay: float | None = None  # not applied to batch-norm and bias parameters
    momentum: float = 0.9
    warmup_epochs: float | None = None  # per stage; None: 10% of each stage, at most 10 epochs


@dataclass(frozen=True)
class MethodConfig:
    temperature: float = 0.2  # simclr / moco_v2 InfoNCE temperature
    queue_size: int = 4096  # moco_v2 negatives (capped at the number of pre-training images)
    ema: float = 0.99  # moco_v2 / byol momentum-encoder decay
    # None: the method's reference sizes, hidden sizes scaled with the backbone width.
    projection_dim: int | None = None
    hidden_dim: int | None = None
    predictor_hidden_dim: int | None = None  # byol / simsiam


@dataclass(frozen=True)
class AugmentConfig:
    """Overrides of the method's augmentation preset; None keeps the preset's value."""

    min_scale: float | None = None
    blur: bool | None = None
    color_jitter: float | None = None  # strength s of SimCLR's jitter(0.8s, 0.8s, 0.8s, 0.2s)


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning of the whole network at the evaluation resolution (S3L's main protocol)."""

    epochs: int = 10
    lr: float = 0.05  # SGD at a batch of LR_REFERENCE_BATCH, cosine


@dataclass(frozen=True)
class EvalConfig:
    every: int = 10  # validation kNN every N epochs (and always after the last)
    knn_k: int = 200
    knn_temperature: float = 0.1
    linear_probe: bool = True
    resolution: int | None = None  # None: the dataset's native size
    floors: bool = True  # what each protocol scores without pre-training (s3l_core.protocol.PROTOCOL_FLOORS)
    # Stratified share of the labelled training split held out of pre-training as the
    # validation set: what monitoring, schedulers and searchers see (never the test split).
    val_fraction: float = 0.1
    bn_recalibrate: bool = False  # re-estimate BN statistics at the evaluation resolution first
    finetune: FinetuneConfig | None = None


@dataclass(frozen=True)
class TrialConfig:
    dataset: str = "fashion-mnist-sample"
    method: str = "simclr"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    resolution: int | tuple[Stage, ...] = 28
    epochs: int | None = None  # run length in passes over the pre-training subset (default 50) ...
    steps: int | None = None  # ... or in optimiser steps (not both)
    data_fraction: float = 1.0
    batch_size: int = 512
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    method_params: MethodConfig = field(default_factory=MethodConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None  # imagefolder only: the one size its images are cached at (default 96)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialConfig":
        """Build and validate a config; raise `ConfigError` listing every problem."""
        problems: list[ConfigProblem] = []
        config = _build(cls, data, "", problems)
        if config is not None:
            reported = {q.path for q in problems}
            problems.extend(q for q in _check_ranges(config) if q.path not in reported)
        if problems:
            raise ConfigError(problems)
        return _normalise(config)

    @classmethod
    def type_problems(cls, data: Any) -> list[ConfigProblem]:
        """Every key and type problem of a resolved config read back from a store (a record's
        `config`), without the range and dataset checks, which depend on the machine reading it."""
        problems: list[ConfigProblem] = []
        _build(cls, data, "", problems)
        return problems

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (stages as list of dicts, None-valued stage keys dropped)."""
        out = dataclasses.asdict(self)
        if isinstance(self.resolution, tuple):
            out["resolution"] = [
                {k: v for k, v in dataclasses.asdict(s).items() if v is not None} for s in self.resolution
            ]
        return out

    @property
    def length_unit(self) -> str:
        """"steps" when the run length is given in optimiser steps, else "epochs"."""
        return "steps" if self.steps is not None else "epochs"

    def stage_plan(self) -> list[tuple[int, int]]:
        """[(resolution, length), ...] in `length_unit`, covering the whole run (after normalising)."""
        unit = self.length_unit
        total = self.steps if unit == "steps" else self.epochs
        if isinstance(self.resolution, int):
            return [(self.resolution, int(total or DEFAULT_EPOCHS))]
        return [(s.resolution, int(getattr(s, unit) or 0)) for s in self.resolution]

    @property
    def max_resolution(self) -> int:
        return max(r for r, _ in self.stage_plan())


# ---------------------------------------------------------------- building from plain data


def apply_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with each dotted key of `overrides` set (`backbone.width` sets
    base["backbone"]["width"]); the one way a sweep point or a CLI flag becomes a trial mapping."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return out


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def did_you_mean(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(options)})"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """`typing.get_type_hints` evaluates every annotation string on each call: a 10,000-trial
    study builds 20,000 configs, so resolve each class once."""
    return typing.get_type_hints(cls)


def _build(cls: type, data: Any, path: str, problems: list[ConfigProblem]) -> Any:
    if not isinstance(data, dict):
        problems.append(ConfigProblem(path, f"expected a mapping, got {_describe(data)}"))
        return None
    hints = _type_hints(cls)
    names = field_names(cls)
    for key in data:
        if key not in names:
            problems.append(ConfigProblem(_join(path, str(key)), "unknown key" + did_you_mean(str(key), names)))
    kwargs = {}
    for name in names:
        if name in data:
            before = len(problems)
            value = _coerce(hints[name], data[name], _join(path, name), problems)
            if len(problems) == before:  # a bad value falls back to the default so range checks still run
                kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # only reachable when a nested value already failed
        problems.append(ConfigProblem(path, str(exc)))
        return None


def _describe(value: Any) -> str:
    return f"{brief(value)} ({type(value).__name__})"


def _coerce(tp: Any, value: Any, path: str, problems: list[ConfigProblem]) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        # Try each alternative quietly; report against the most specific one.
        for option in options:
            if option is type(None):
                continue
            trial: list[ConfigProblem] = []
            result = _coerce(option, value, path, trial)
            if not trial:
                return result
        wanted = " or ".join("null" if o is type(None) else _type_name(o) for o in options)
        problems.append(ConfigProblem(path, f"{_describe(value)} is not {wanted}"))
        return None
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or not value:
            problems.append(ConfigProblem(path, f"expected a non-empty list, got {_describe(value)}"))
            return None
        return tuple(_coerce(item_tp, v, f"{path}[{i}]", problems) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, problems)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    problems.append(ConfigProblem(path, f"{_describe(value)} is not {_type_name(tp)}"))
    return None


def _type_name(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a mapping" if tp is not Stage else "a list of stages"
    if typing.get_origin(tp) is tuple:
        return "a list of stages"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _check_ranges(c: TrialConfig) -> list[ConfigProblem]:
    p: list[ConfigProblem] = []

    def need(ok: bool, path: str, message: str) -> None:
        if not ok:
            p.append(ConfigProblem(path, message))

    dataset_problem = check_dataset_name(c.dataset)
    need(dataset_problem is None, "dataset", dataset_problem or "")
    need(c.method in METHOD_NAMES, "method", f"unknown method '{c.method}'" + did_you_mean(c.method, list(METHOD_NAMES)))
    need(c.backbone.depth in DEPTHS, "backbone.depth", f"{c.backbone.depth} is not one of {list(DEPTHS)}")
    need(c.backbone.width > 0, "backbone.width", f"{c.backbone.width} must be > 0")
    need(c.backbone.width <= 16, "backbone.width", f"{c.backbone.width} is larger than 16")
    need(c.backbone.stages in (3, 4), "backbone.stages", f"{c.backbone.stages} must be 3 or 4")
    need(0 < c.data_fraction <= 1, "data_fraction", f"{c.data_fraction} must be in (0, 1]")
    need(c.epochs is None or c.epochs >= 1, "epochs", f"{c.epochs} must be a positive integer")
    need(c.epochs is None or c.epochs <= MAX_EPOCHS, "epochs", _over_limit(c.epochs, MAX_EPOCHS, "epochs"))
    need(c.steps is None or c.steps >= 1, "steps", f"{c.steps} must be a positive integer")
    need(c.steps is None or c.steps <= MAX_STEPS, "steps", _over_limit(c.steps, MAX_STEPS, "steps"))
    need(c.epochs is None or c.steps is None, "steps", "give the run length as epochs or as steps, not both")
    need(c.backbone.stem in STEMS, "backbone.stem", f"'{c.backbone.stem}' is not one of {', '.join(STEMS)}")
    need(c.image_size is None or 8 <= c.image_size <= 1024, "image_size", f"{c.image_size} must be an integer in 8..1024")
    need(
        c.image_size is None or c.dataset.startswith("imagefolder:"),
        "image_size",
        "only an imagefolder: dataset has a cache size; built-in datasets keep their native size",
    )
    need(c.batch_size >= 2, "batch_size", f"{c.batch_size} must be at least 2")
    need(c.batch_size <= MAX_BATCH_SIZE, "batch_size", _over_limit(c.batch_size, MAX_BATCH_SIZE, "images per step"))
    need(c.seed >= 0, "seed", f"{c.seed} must be >= 0")
    o = c.optimizer
    need(o.name is None or o.name in OPTIMIZERS, "optimizer.name", f"'{o.name}' is not one of {', '.join(OPTIMIZERS)}")
    need(o.lr is None or o.lr > 0, "optimizer.lr", f"{o.lr} must be > 0")
    need(o.weight_decay is None or o.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0")
    need(0 <= o.momentum < 1, "optimizer.momentum", "must be in [0, 1)")
    need(o.warmup_epochs is None or o.warmup_epochs >= 0, "optimizer.warmup_epochs", "must be >= 0")
    need(c.method_params.temperature > 0, "method_params.temperature", "must be > 0")
    need(c.method_params.queue_size >= 1, "method_params.queue_size", "must be >= 1")
    need(0 <= c.method_params.ema < 1, "method_params.ema", "must be in [0, 1)")
    for name in ("projection_dim", "hidden_dim", "predictor_hidden_dim"):
        value = getattr(c.method_params, name)
        need(value is None or value >= 1, f"method_params.{name}", "must be >= 1")
    a = c.augment
    need(a.min_scale is None or 0 < a.min_scale <= 1, "augment.min_scale", "must be in (0, 1]")
    need(a.color_jitter is None or 0 <= a.color_jitter <= 2, "augment.color_jitter", "must be in [0, 2]")
    need(c.eval.every >= 1, "eval.every", f"{c.eval.every} must be a positive integer")
    need(c.eval.knn_k >= 1, "eval.knn_k", f"{c.eval.knn_k} must be a positive integer")
    need(c.eval.knn_temperature > 0, "eval.knn_temperature", "must be > 0")
    need(c.eval.resolution is None or c.eval.resolution >= 1, "eval.resolution", "must be a positive integer")
    need(0 < c.eval.val_fraction <= 0.5, "eval.val_fraction", f"{c.eval.val_fraction} must be in (0, 0.5]")
    if c.eval.finetune is not None:
        need(c.eval.finetune.epochs >= 1, "eval.finetune.epochs", f"{c.eval.finetune.epochs} must be a positive integer")
        need(c.eval.finetune.epochs <= MAX_EPOCHS, "eval.finetune.epochs", _over_limit(c.eval.finetune.epochs, MAX_EPOCHS, "epochs"))
        need(c.eval.finetune.lr > 0, "eval.finetune.lr", f"{c.eval.finetune.lr} must be > 0")
    need(c.device == "auto" or c.device == "cpu" or c.device.startswith("cuda"), "device", f"'{c.device}' is not auto, cpu or cuda[:N]")
    if isinstance(c.resolution, int):
        need(1 <= c.resolution <= 1024, "resolution", f"{c.resolution} must be a positive integer up to 1024")
    else:
        kinds = {(s.epochs is not None, s.steps is not None, s.fraction is not None) for s in c.resolution}
        if len(kinds) != 1 or sum(next(iter(kinds))) != 1:
            p.append(ConfigProblem("resolution", "every stage needs exactly one of 'epochs', 'steps' or 'fraction', the same one in all stages"))
        elif not c.resolution[0].fraction:
            # Stages that give their own lengths set the run length; a top-level length must agree.
            for unit in ("epochs", "steps"):
                given, total = getattr(c, unit), sum(int(getattr(s, unit) or 0) for s in c.resolution)
                if given is not None and given != total:
                    p.append(ConfigProblem(unit, f"the stages add up to {total} {'epochs' if c.resolution[0].epochs else 'steps'}, but {unit} is {given}"))
                limit = MAX_EPOCHS if unit == "epochs" else MAX_STEPS
                if given is None and getattr(c.resolution[0], unit) is not None and total > limit:
                    p.append(ConfigProblem("resolution", f"the stages add up to {total:,} {unit}, more than the {limit:,} allowed"))
        for i, s in enumerate(c.resolution):
            need(1 <= s.resolution <= 1024, f"resolution[{i}].resolution", f"{s.resolution} must be a positive integer up to 1024")
            need(s.epochs is None or s.epochs >= 1, f"resolution[{i}].epochs", f"{s.epochs} must be a positive integer")
            need(s.epochs is None or s.epochs <= MAX_EPOCHS, f"resolution[{i}].epochs", _over_limit(s.epochs, MAX_EPOCHS, "epochs"))
            need(s.steps is None or s.steps >= 1, f"resolution[{i}].steps", f"{s.steps} must be a positive integer")
            need(s.steps is None or s.steps <= MAX_STEPS, f"resolution[{i}].steps", _over_limit(s.steps, MAX_STEPS, "steps"))
            need(s.fraction is None or 0 < s.fraction <= 1, f"resolution[{i}].fraction", f"{s.fraction} must be in (0, 1]")
        fractions = [s.fraction for s in c.resolution if s.fraction is not None]
        if fractions and len(fractions) == len(c.resolution) and abs(sum(fractions) - 1) > 1e-6:
            p.append(ConfigProblem("resolution", f"stage fractions sum to {sum(fractions):g}, not 1"))
    return p


def _over_limit(value: int | None, limit: int, unit: str) -> str:
    """`value` is beyond `limit`, written so that a mistyped 1e23 reads as 1e+23, not as 24 digits
    (built for every check, as `need` takes its message: '' for a value not given)."""
    if value is None:
        return ""
    shown = f"{value:,}" if value < 10**12 else f"{value:.3g}"
    return f"{shown} is more than the {limit:,} {unit} allowed"


def resolve_recipe(c: TrialConfig) -> TrialConfig:
    """`c` with every None optimiser and head setting taken from its method's recipe."""
    if c.method not in RECIPES:  # a method without its recipe: a config error, never a KeyError traceback
        raise ConfigError([ConfigProblem("method", f"no optimiser recipe for method '{c.method}'; known: {', '.join(RECIPES)}")])
    recipe = RECIPES[c.method]
    o, m = c.optimizer, c.method_params
    hidden, projection, predictor = head_sizes(c.method, c.backbone.width)
    optimizer = dataclasses.replace(
        o,
        name=o.name or recipe.optimizer,
        lr=o.lr if o.lr is not None else recipe.lr,
        weight_decay=o.weight_decay if o.weight_decay is not None else recipe.weight_decay,
    )
    params = dataclasses.replace(
        m,
        hidden_dim=m.hidden_dim or hidden,
        projection_dim=m.projection_dim or projection,
        predictor_hidden_dim=m.predictor_hidden_dim or predictor,
    )
    return dataclasses.replace(c, optimizer=optimizer, method_params=params)


def _record_blur_departure(c: TrialConfig) -> TrialConfig:
    """Blur follows the dataset's image size (`s3l_core.effects.preset_blur`); up to 0.1.0 it followed
    each stage's resolution. Where the two rules disagree for a trial left at the preset (a 32 px arm
    of a 96 px dataset, a 64 px arm of a 32 px one), the decision is written into the config, so that
    trial gets a new id and is not mistaken for the one 0.1.0 computed; everywhere else nothing changes."""
    from s3l_core.effects import PRESET_BLUR_MIN_RESOLUTION, preset_blur

    if c.augment.blur is not None or c.method == "supervised" or not _known_dataset(c.dataset):
        return c
    blur = preset_blur(c.dataset, c.image_size)
    resolutions = [c.resolution] if isinstance(c.resolution, int) else [s.resolution for s in c.resolution]
    if all((r >= PRESET_BLUR_MIN_RESOLUTION) == blur for r in resolutions):
        return c
    return dataclasses.replace(c, augment=dataclasses.replace(c.augment, blur=blur))


def _known_dataset(name: str) -> bool:
    return check_dataset_name(name) is None or name.startswith("imagefolder:")


def _normalise(c: TrialConfig) -> TrialConfig:
    """Resolve the run length and stage fractions to whole epochs or steps, and the method's
    recipe into every None-valued optimiser and head setting, so a config says everything it
    trains with, `stage_plan()` is exact and hashing is stable."""
    c = resolve_recipe(c)
    c = _record_blur_departure(c)
    if isinstance(c.resolution, int):
        if c.steps is None and c.epochs is None:
            c = dataclasses.replace(c, epochs=DEFAULT_EPOCHS)
        return c
    stages = c.resolution
    for unit in ("epochs", "steps"):
        if getattr(stages[0], unit) is not None:  # the stages set the run length
            total = sum(int(getattr(s, unit)) for s in stages)
            return dataclasses.replace(c, epochs=total if unit == "epochs" else None, steps=total if unit == "steps" else None)
    unit = "steps" if c.steps is not None else "epochs"
    total = int(c.steps if c.steps is not None else (c.epochs or DEFAULT_EPOCHS))
    counts = [max(1, round((s.fraction or 0) * total)) for s in stages]
    counts[-1] = max(1, total - sum(counts[:-1]))
    resolved = tuple(Stage(resolution=s.resolution, **{unit: n}) for s, n in zip(stages, counts))
    total = sum(counts)
    return dataclasses.replace(c, resolution=resolved, epochs=total if unit == "epochs" else None, steps=total if unit == "steps" else None)
