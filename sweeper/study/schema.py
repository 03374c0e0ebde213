"""The study file's schema: one `KeyDoc` per key, the checks the validator applies, and
the reference tables of `docs/studies.md` (`python -m sweeper.study.schema` prints them).

`STUDY_KEYS` is the one description of the study keys: the validator reads types,
defaults and checks from it, and `docs/studies.md` is checked against it (and against
the `s3l_core.config` dataclasses for the `trial:` keys) by a test.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from s3l_core.config import DEPTHS, METHOD_NAMES, Stage, TrialConfig
from s3l_core.quoting import brief
from sweeper.store.uris import credentials_problem

# ------------------------------------------------------------------------------ constants

OBJECTIVE_METRICS = (
    "knn_top1", "knn_top1_best", "linear_top1", "finetune_top1",
    "train_pflops", "eval_pflops", "total_pflops", "wall_s", "gpu_hours",
)
EPOCH_METRICS = ("knn_top1",)  # its validation counterpart is reported every round, so ASHA can stop on it
# An objective names the test-split number the report states; Ray's schedulers and searchers
# optimise its validation counterpart, so no decision ever reads the test split.
SELECTION_METRICS = {"knn_top1": "knn_val_top1", "linear_top1": "linear_val_top1", "finetune_top1": "finetune_val_top1"}


def selection_metric(objective: str) -> str:
    """The metric Ray optimises for a study objective: validation for accuracies, else itself."""
    return SELECTION_METRICS.get(objective, objective)
ALGORITHMS = ("grid", "random", "optuna-tpe", "optuna-nsga2")
SCHEDULERS = ("none", "asha")
KEEP = ("encoder", "checkpoint", "none")  # what a finished trial keeps in the store
SPEC_KINDS = ("grid", "choice", "uniform", "loguniform", "int")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

# ------------------------------------------------------------------------------ checks


Check = Callable[[Any], "str | None"]


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_check(minimum: int) -> Check:
    def check(v: Any) -> str | None:
        if not is_int(v):
            return f"{brief(v)} is not an integer"
        return None if v >= minimum else f"{v} must be >= {minimum}"
    return check


def _number_check(*, gt: float | None = None, ge: float | None = None) -> Check:
    def check(v: Any) -> str | None:
        if not is_number(v):
            return f"{brief(v)} is not a number"
        if gt is not None and not v > gt:
            return f"{v} must be > {gt:g}"
        if ge is not None and not v >= ge:
            return f"{v} must be >= {ge:g}"
        return None
    return check


def _enum_check(options: tuple[str, ...]) -> Check:
    def check(v: Any) -> str | None:
        if v in options and isinstance(v, str):
            return None
        close = difflib.get_close_matches(v, options, n=1, cutoff=0.6) if isinstance(v, str) else []
        return f"{brief(v)} is not one of {', '.join(options)}" + (f" (did you mean '{close[0]}'?)" if close else "")
    return check


def _text_check(*, optional: bool = False, nonempty: bool = True) -> Check:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, str):
            return f"{brief(v)} is not a string" + (" or null" if optional else "")
        if "\0" in v:
            return "contains a NUL byte"
        return "must not be empty" if nonempty and not v.strip() else None
    return check


# Object stores a `storage:` / `report:` URI may name (pyarrow.fs URIs); checked without contacting them.
URI_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")


def _location_check(v: Any) -> str | None:
    """A local path, or an object-store URI such as s3://bucket/prefix (reached only when the study runs)."""
    problem = _text_check()(v)
    if problem is None and "://" in v and not v.startswith("file://"):
        with_credentials = credentials_problem(v)
        if with_credentials:
            return with_credentials  # before any message that would echo the URI
        scheme, _, rest = v.partition("://")
        if scheme not in URI_SCHEMES:
            return f"{brief(v)}: unknown object-store scheme {brief(scheme)}; use a local path or one of {', '.join(s + '://' for s in URI_SCHEMES)}"
        if not rest.split("?", 1)[0].strip("/"):
            return f"{brief(v)} names no bucket; write {scheme}://BUCKET/PREFIX"
    return problem


# Experiment trackers, each fed through Ray Tune's own logger callback: name -> (package, extra).
LOGGERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboardX", "tensorboardX"),
    "wandb": ("wandb", "s3l-sweep[wandb]"),
    "mlflow": ("mlflow", "s3l-sweep[mlflow]"),
}


def _loggers_check(v: Any) -> str | None:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        return f"expected a list of logger names such as [tensorboard, mlflow], got {brief(v)}"
    import importlib.util

    for name in v:
        if name not in LOGGERS:
            close = difflib.get_close_matches(name, list(LOGGERS), n=1)
            return f"unknown logger {brief(name)}; known: {', '.join(LOGGERS)}" + (f" (did you mean '{close[0]}'?)" if close else "")
        package, extra = LOGGERS[name]
        if importlib.util.find_spec(package) is None:  # looked up, not imported: validation stays fast
            return f"logger {brief(name)} needs the {package} package, which is not installed: pip install '{extra}'"
    if len(set(v)) != len(v):
        return f"{brief(v)} lists a logger twice"
    return None


def _name_check(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"{brief(v)} is not a string"
    if NAME_PATTERN.fullmatch(v):
        return None
    return (
        f"{brief(v)} is not a valid study name: use letters, digits, '_', '.' and '-', starting with a letter "
        "or digit, at most 100 characters (it names directories under storage and report)"
    )


# ------------------------------------------------------------------------------ the schema


@dataclass(frozen=True)
class KeyDoc:
    """One documented study key. `check` returns a message for a bad value, or None."""

    path: str
    type: str
    default: Any
    allowed: str
    meaning: str
    check: Check | None = field(default=None, compare=False, repr=False)


STUDY_KEYS: list[KeyDoc] = [
    KeyDoc("name", "string", REQUIRED, "letters, digits, `_`, `.`, `-`; starts with a letter or digit; 1-100 characters",
           "Names the study; results go to `<storage>/<name>/` and the report to `<report>/<name>/`.", _name_check),
    KeyDoc("description", "string", "", "any text", "One line saying what question the study answers.",
           _text_check(nonempty=False)),
    KeyDoc("dataset", "string", REQUIRED,
           "fashion-mnist, fashion-mnist-sample, cifar10, cifar100, stl10, digits, imagefolder:PATH",
           "Pre-training and evaluation data; merged into `trial` as `trial.dataset`."),
    KeyDoc("trial", "mapping", {}, "the `trial.*` keys below",
           "The base trial config (`s3l_core` `TrialConfig`); every key has a default."),
    KeyDoc("space", "mapping", {},
           "dotted `trial` key -> `{grid: [...]}`, `{choice: [...]}`, `{uniform: [lo, hi]}`, "
           "`{loguniform: [lo, hi]}` or `{int: [lo, hi]}`",
           "What the study varies; each entry overrides that key of `trial`."),
    KeyDoc("seeds", "list of integers", [0], "non-empty, unique, each >= 0",
           "Every configuration runs once per seed (sets `trial.seed`)."),
    KeyDoc("search.algorithm", "string", "grid", ", ".join(ALGORITHMS),
           "How points of `space` are chosen: every combination, random draws, or Optuna's TPE / NSGA-II.",
           _enum_check(ALGORITHMS)),
    KeyDoc("search.num_samples", "integer", 1, ">= 1; required unless algorithm is grid",
           "Number of configurations drawn (random, optuna-*); for grid, how often the grid repeats.",
           _int_check(1)),
    KeyDoc("search.seed", "integer", 0, ">= 0", "Seed of the random and Optuna samplers.", _int_check(0)),
    KeyDoc("objectives", "mapping", REQUIRED, f"metric -> max or min; metrics: {', '.join(OBJECTIVE_METRICS)}",
           "What the study optimises, most important first; the report's Pareto front uses all of them."),
    KeyDoc("scheduler.type", "string", "none", ", ".join(SCHEDULERS),
           "`asha` stops weak trials early on the first objective, which must be `knn_top1`.",
           _enum_check(SCHEDULERS)),
    KeyDoc("scheduler.grace_period", "integer", 1, ">= 1", "ASHA: epochs every trial runs before it can be stopped.",
           _int_check(1)),
    KeyDoc("scheduler.reduction_factor", "number", 3, "> 1", "ASHA: keep 1 in this many trials at each rung.",
           _number_check(gt=1)),
    KeyDoc("resources.cpu", "number", 1, "> 0", "CPUs reserved per trial (also its torch thread count).",
           _number_check(gt=0)),
    KeyDoc("resources.gpu", "number", 0, ">= 0; a fraction such as 0.25, or a whole number",
           "GPUs reserved per trial; fractions pack several small trials on one GPU.", _number_check(ge=0)),
    KeyDoc("max_concurrent", "integer", 4, ">= 1", "Most trials running at once.", _int_check(1)),
    KeyDoc("budget.gpu_hours", "number", None, "> 0; give gpu_hours or pflops, not both; only with resources.gpu > 0",
           "No new trial starts once this many GPU-hours are spent.", _number_check(gt=0)),
    KeyDoc("budget.pflops", "number", None, "> 0; give gpu_hours or pflops, not both",
           "No new trial starts once this many PFLOPs are spent.", _number_check(gt=0)),
    KeyDoc("failure.max_retries", "integer", 2, "0-10",
           "Times a crashed trial (killed worker, lost node, out of memory) is retried from its last checkpoint; "
           "configuration and data errors fail at once.", _int_check(0)),
    KeyDoc("cluster.address", "string or null", None, "null, local, auto, ray://HOST:PORT, HOST:PORT",
           "Ray cluster to attach to; null or `local` starts an embedded Ray of the driver on 127.0.0.1 "
           "(`--address`/`RAY_ADDRESS` override it).",
           _text_check(optional=True)),
    KeyDoc("storage", "string", "runs/", "a local path (on a cluster, one mounted on every node), or an object-store URI: "
           "`s3://bucket/prefix`, `gs://...` (docs/cluster.md)",
           "Where results, checkpoints and the resolved study are stored.", _location_check),
    KeyDoc("report", "string", "reports/", "a local path, or an object-store URI; not `storage`, nor a folder inside it or holding it",
           "Where the HTML report is written (built on the driver).", _location_check),
    KeyDoc("loggers", "list of strings", ["tensorboard"], "tensorboard, wandb, mlflow; wandb and mlflow need their extra "
           "(`pip install 's3l-sweep[mlflow]'`); `[]` for none",
           "Experiment trackers fed with every trial's reports through Ray Tune's integrations (tensorboard event files "
           "go under `<storage>/<name>/ray/`; MLflow to `MLFLOW_TRACKING_URI`, else `sqlite:///<storage>/<name>/mlflow.db`; "
           "wandb to its project `<name>`, offline with `WANDB_MODE=offline`).", _loggers_check),
    KeyDoc("keep", "string", "encoder", ", ".join(KEEP),
           "What a finished trial keeps in the store once its record is written: `encoder`, the pre-trained encoder's "
           "weights (`encoder.pt`, what a user reuses); `checkpoint`, the whole last checkpoint (optimiser and "
           "generator states too, several times the size); `none`. A finished trial is never resumed, so nothing "
           "the sweeper does needs more.", _enum_check(KEEP)),
]
KEY_BY_PATH = {k.path: k for k in STUDY_KEYS}
TOP_LEVEL_KEYS = list(dict.fromkeys(k.path.split(".")[0] for k in STUDY_KEYS))
SECTIONS = {top: [k.path.split(".", 1)[1] for k in STUDY_KEYS if k.path.startswith(top + ".")]
            for top in TOP_LEVEL_KEYS if any(k.path.startswith(top + ".") for k in STUDY_KEYS)}


# --------------------------------------------------------------------- the trial keys


_TRIAL_DOCS: dict[str, tuple[str, str]] = {  # dotted trial key -> (allowed, meaning)
    "dataset": ("set it with the top-level `dataset`", "Filled in from the top-level `dataset` key; do not write it under `trial`."),
    "method": (", ".join(METHOD_NAMES), "Self-supervised method (`supervised` is a labelled reference)."),
    "backbone.depth": (", ".join(str(d) for d in DEPTHS), "ResNet depth."),
    "backbone.width": ("> 0, up to 16", "Channel multiplier of the ResNet (1.0 = 64 base channels)."),
    "backbone.stages": ("3, 4", "Residual stages; 3 is S3L's \"conv5 removed\"."),
    "backbone.stem": ("auto, cifar, imagenet",
                      "First layer: `cifar` (3x3, stride 1) or `imagenet` (7x7 stride 2 + max-pool); auto picks cifar for "
                      "datasets of images under 96 px. Chosen from the dataset, never from a trial's resolution."),
    "resolution": ("1-1024, or a list of stages",
                   "Pre-training input size in pixels, or stages such as `[{resolution: 14, fraction: 0.8}, "
                   "{resolution: 28, fraction: 0.2}]`."),
    "resolution[].resolution": ("1-1024", "Input size of one stage."),
    "resolution[].epochs": ("an integer 1-10,000 (the stages' sum too); every stage gives epochs, every stage steps, "
                            "or every stage fraction",
                            "Epochs of this stage; the stages' epochs set the run length."),
    "resolution[].steps": ("an integer 1-100,000,000 (the stages' sum too)",
                           "Optimiser steps of this stage; the stages' steps set the run length."),
    "resolution[].fraction": ("in (0, 1]; the fractions sum to 1",
                              "Share of the run length (`trial.epochs` or `trial.steps`) spent in this stage."),
    "epochs": ("null, or 1-10,000; not with steps", "Pre-training length in passes over the pre-training subset (null and no "
               "steps: 50)."),
    "steps": ("null, or 1-100,000,000; not with epochs",
              "Pre-training length in optimiser steps, to compare data fractions at equal steps or equal compute."),
    "data_fraction": ("in (0, 1]", "Stratified, seeded share of the training split used for pre-training."),
    "batch_size": ("2-65,536", "Images per step (each seen in two views)."),
    "optimizer.name": ("null, sgd, lars", "Optimiser; null takes the method's reference (lars for simclr and byol, else sgd)."),
    "optimizer.lr": ("null, or > 0",
                     "Learning rate per 256 images, scaled linearly to the batch used; null takes the method's reference. "
                     "Warm-up, then cosine decay to zero, in every stage."),
    "optimizer.weight_decay": ("null, or >= 0", "Weight decay (never on batch-norm and bias parameters); null takes the method's reference."),
    "optimizer.momentum": ("in [0, 1)", "Momentum (SGD and LARS)."),
    "optimizer.warmup_epochs": ("null, or >= 0", "Linear warm-up at the start of every stage, in epochs; null: 10% of the stage, at most 10 epochs."),
    "method_params.temperature": ("> 0", "InfoNCE temperature (simclr, moco_v2)."),
    "method_params.ema": ("in [0, 1)", "Momentum-encoder decay (moco_v2, byol)."),
    "method_params.queue_size": (">= 1", "Negatives kept in the queue (moco_v2); capped at the number of pre-training images."),
    "method_params.projection_dim": ("null, or >= 1", "Output size of the projection head; null takes the method's reference."),
    "method_params.hidden_dim": ("null, or >= 1", "Hidden size of the projector; null takes the method's reference scaled by the backbone width."),
    "method_params.predictor_hidden_dim": ("null, or >= 1",
                                           "Hidden size of the predictor (byol, simsiam); null takes the method's reference scaled by the width."),
    "augment.min_scale": ("null, or in (0, 1]", "Smallest random-crop area; null keeps the method's preset."),
    "augment.blur": ("null, true, false", "Gaussian blur on or off; null keeps the method's preset."),
    "augment.color_jitter": ("null, or in [0, 2]", "Colour-jitter strength s; null keeps the method's preset."),
    "eval.every": (">= 1", "Run the validation kNN every this many rounds (epochs; in a steps run, epochs of the whole pool) and after the last."),
    "eval.knn_k": (">= 1", "Neighbours of the weighted cosine kNN classifier."),
    "eval.knn_temperature": ("> 0", "Temperature of the kNN vote weights."),
    "eval.linear_probe": ("true, false", "Fit a linear probe on frozen features after the last epoch."),
    "eval.resolution": ("null, or >= 1", "Evaluation input size; null uses the dataset's native size."),
    "eval.floors": ("true, false", "Also measure the floors of each evaluation protocol: kNN and the linear probe on raw pixels and on an untrained encoder, and fine-tuning from random initialisation."),
    "eval.val_fraction": ("in (0, 0.5]", "Stratified share of the labelled training split held out of pre-training as the "
                          "validation set (the same for every seed); selection and curves use it, never the test split."),
    "eval.bn_recalibrate": ("true, false", "Re-estimate batch-norm statistics at the evaluation resolution before frozen evaluation."),
    "eval.finetune": ("null, or a mapping", "Fine-tune the whole network at the evaluation resolution after pre-training "
                      "(S3L's protocol); gives `finetune_top1`, its cost counted as evaluation."),
    "eval.finetune.epochs": ("1-10,000", "Fine-tuning epochs over the labelled training images."),
    "eval.finetune.lr": ("> 0", "Fine-tuning learning rate per 256 images (SGD, cosine)."),
    "seed": ("set it with the top-level `seeds`", "Filled in from each entry of `seeds`; do not write it under `trial`."),
    "data_dir": ("null or a path", "Folder with the dataset files; null looks in $S3L_DATA_DIR, known locations, then the cache."),
    "download": ("true, false", "Download the dataset if it is missing."),
    "image_size": ("null, or 8-1024; imagefolder only",
                   "The one size an imagefolder dataset is decoded and cached at (its native size for every arm); null: the "
                   "images' own size when they are all one square size, else 96."),
    "device": ("auto, cpu, cuda, cuda:N", "Device of the trial; auto uses CUDA when the trial can see a GPU, else the CPU."),
    "compile": ("true, false", "Run the model through `torch.compile`."),
}


def _trial_fields(cls: type = TrialConfig, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, type hint, default) of every leaf of the trial config, stage fields as `resolution[].x`."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(_trial_fields(tp, path + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else REQUIRED
        out.append((path, tp, default))
        section = _optional_section(tp)
        if section is not None:  # e.g. eval.finetune: null, or a mapping of its own keys
            out.extend(_trial_fields(section, path + "."))
        if cls is TrialConfig and f.name == "resolution":
            out.extend(_trial_fields(Stage, "resolution[]."))
    return out


def _optional_section(tp: Any) -> type | None:
    """The dataclass of an `X | None` hint whose X is a section (a dataclass), else None."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        sections = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return sections[0] if sections else None
    return None


def _type_text(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "mapping"
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = typing.get_args(tp)
        return " or ".join("null" if a is type(None) else _type_text(a) for a in args)
    if typing.get_origin(tp) is tuple:
        return "list of stages"
    return {int: "integer", float: "number", bool: "true/false", str: "string"}.get(tp, str(tp))


def trial_key_docs() -> list[KeyDoc]:
    """KeyDoc of every `trial.*` key, read from the `s3l_core.config` dataclasses."""
    docs = []
    for path, tp, default in _trial_fields():
        allowed, meaning = _TRIAL_DOCS.get(path, ("", ""))
        docs.append(KeyDoc(f"trial.{path}", _type_text(tp), default, allowed, meaning))
    return docs


def _knob_paths(cls: type = TrialConfig, prefix: str = "") -> dict[str, Any]:
    """Every dotted key a `space` entry may set (sections and leaves) -> its type hint."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        out[path] = hints[f.name]
        section = hints[f.name] if dataclasses.is_dataclass(hints[f.name]) else _optional_section(hints[f.name])
        if section is not None:
            out.update(_knob_paths(section, path + "."))
    return out


KNOBS = {k: v for k, v in _knob_paths().items() if k != "seed"}
LEAF_KNOBS = [k for k, tp in KNOBS.items() if not dataclasses.is_dataclass(tp)]


def format_default(value: Any) -> str:
    """How a default is written in docs/studies.md."""
    if value is REQUIRED:
        return "required"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return repr(value)


def render_key_tables() -> str:
    """The reference tables of docs/studies.md (`python -m sweeper.study.load` prints them)."""

    def table(keys: list[KeyDoc]) -> list[str]:
        rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for k in keys:
            rows.append(f"| `{k.path}` | {k.type} | `{format_default(k.default)}` | {k.allowed} | {k.meaning} |")
        return rows

    return "\n".join(["### Study keys", "", *table(STUDY_KEYS), "", "### Trial keys", "", *table(trial_key_docs())]) + "\n"


if __name__ == "__main__":
    print(render_key_tables(), end="")
