"""A trial record read back from a store, checked field by field before anyone relies on it.

A store can come from elsewhere (a colleague's folder, a bucket): every reader of records
(`status`, `report`, `run` deciding what is finished) goes through `record_problem`, so a record
with a wrong type anywhere is skipped with one warning naming its file and the field, and
counts as not computed, instead of crashing a table or a sum.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from s3l_core.config import TrialConfig
from s3l_core.floors import FLOOR_METRICS
from sweeper.store.trial_identity import ID_FIELDS_V1

TRIAL_STATUSES = ("finished", "failed", "stopped", "skipped_budget")

Check = Callable[[Any], bool]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return _number(value) and (isinstance(value, int) or (math.isfinite(value) and float(value).is_integer()))


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _non_negative(value: Any) -> bool:
    return _number(value) and value >= 0  # NaN compares False: refused


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float))


def _string(value: Any) -> bool:
    return isinstance(value, str)


Spec = tuple[Check, str]  # a check, and what it wants in words
NUMBER_OR_NULL: Spec = (_optional(_number), "a number or null")
WHOLE_OR_NULL: Spec = (_optional(_whole), "a whole number or null")
SCALAR: Spec = (_scalar, "a number, string, true/false or null")  # a key this release does not read

# Every key of a trial's final metrics that a table or the report reads.
METRIC_SPECS: dict[str, Spec] = {
    **dict.fromkeys((
        "knn_top1", "knn_val_top1", "knn_top1_best", "linear_top1", "linear_val_top1", "finetune_top1", "finetune_val_top1",
        *FLOOR_METRICS, "feature_rank", "train_pflops", "eval_pflops", "total_pflops", "wall_s", "train_s", "img_per_s", "peak_mem_mb"), NUMBER_OR_NULL),
    **dict.fromkeys(("test_size", "val_size", "pretrain_images", "steps", "resumed_from_epoch"), WHOLE_OR_NULL),
    "device": (_optional(_string), "a string or null"),
}  # fmt: skip
EPOCH_SPECS: dict[str, Spec] = {
    "epoch": (_whole, "a whole number"), "step": WHOLE_OR_NULL, "resolution": WHOLE_OR_NULL, "loss": NUMBER_OR_NULL, "lr": NUMBER_OR_NULL,
    "knn_val_top1": NUMBER_OR_NULL, "train_pflops_cum": NUMBER_OR_NULL, "wall_s_cum": NUMBER_OR_NULL, "img_per_s": NUMBER_OR_NULL,
    "final": (lambda v: v is None or isinstance(v, bool), "true, false or null"),
}  # fmt: skip
REQUIRED_EPOCH_KEYS = ("epoch",)


def record_problem(record: Any, tid: str) -> str | None:
    """Why a parsed record cannot be used (the first field at fault, by its dotted path), or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {_type_name(record)}"
    for key in ("trial_id", "status"):
        if not isinstance(record.get(key), str):
            return f"'{key}' is missing or not a string"
    if record["trial_id"] != tid:
        return f"its trial_id {record['trial_id']!r} does not match its file name"
    if record["status"] not in TRIAL_STATUSES:
        return f"unknown status {record['status']!r}"
    return _config_problem(record.get("config")) or _fields_problem(record) or _metrics_problem(record) or _epochs_problem(record)


def _config_problem(config: Any) -> str | None:
    if not isinstance(config, dict):
        return "'config' is missing or not an object"
    problems = TrialConfig.type_problems(config)
    if problems:
        return f"config.{problems[0]}"
    missing = [path for path in sorted(ID_FIELDS_V1) if _lacks(config, path)]
    return f"config.{missing[0]} is missing" if missing else None


def _lacks(config: dict[str, Any], path: str) -> bool:
    """Whether a field every record has held since results version 1 is absent (a missing
    `resolution` would otherwise read as the default's 28 px)."""
    node: Any = config
    *parents, last = path.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:  # under an optional section that is null (eval.finetune): nothing is missing
            return False
    return last not in node


TOP_LEVEL_SPECS: dict[str, Spec] = {
    "error": (_optional(_string), "a string or null"),
    "point": (lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v), "an object"),
    "node": (_optional(_string), "a string or null"),
    "gpu_fraction": (_non_negative, "a number >= 0"),
    "cpus": (_non_negative, "a number >= 0"),
    "predicted_train_pflops": (_optional(_number), "a number or null"),
    "resumed_from_corrupt": (lambda v: isinstance(v, bool), "true or false"),
    "metrics": (lambda v: isinstance(v, dict), "an object"),
    "epochs": (lambda v: isinstance(v, list), "a list"),
}


def _fields_problem(record: dict[str, Any]) -> str | None:
    for key, (check, wanted) in TOP_LEVEL_SPECS.items():
        if key in record and not check(record[key]):
            return f"'{key}' is {_shown(record[key])}, not {wanted}"
    return None


def _metrics_problem(record: dict[str, Any]) -> str | None:
    for key, value in (record.get("metrics") or {}).items():
        check, wanted = METRIC_SPECS.get(key, SCALAR)
        if not check(value):
            return f"'metrics.{key}' is {_shown(value)}, not {wanted}"
    return None


def _epochs_problem(record: dict[str, Any]) -> str | None:
    for i, epoch in enumerate(record.get("epochs") or []):
        if not isinstance(epoch, dict):
            return f"'epochs[{i}]' is {_shown(epoch)}, not an object"
        for key in REQUIRED_EPOCH_KEYS:
            if key not in epoch:
                return f"'epochs[{i}].{key}' is missing"
        for key, value in epoch.items():
            check, wanted = EPOCH_SPECS.get(key, SCALAR)
            if not check(value):
                return f"'epochs[{i}].{key}' is {_shown(value)}, not {wanted}"
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{text[:40]}... ({_type_name(value)})" if len(text) > 40 else f"{text} ({_type_name(value)})"


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "true/false", int: "integer", float: "number", type(None): "null"}.get(
        type(value), type(value).__name__)
