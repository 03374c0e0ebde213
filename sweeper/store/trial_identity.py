"""A trial's identity: what it computes, in a form that survives upgrades of the config.

A trial id hashes the resolved `TrialConfig` (as `to_dict()` gives it), less where and how fast
it runs (`UNHASHED_KEYS`), plus `s3l_core.RESULTS_VERSION`. Hashing every field as it is would
change every id whenever a release adds a field to `TrialConfig`, even one whose default changes
nothing, and a store's finished trials would all train again. So the fields that ids have
hashed since results version 1 (`ID_FIELDS_V1`, frozen here: never derive it from the class) are
always hashed, and a field added after them enters the identity only when it differs from its
default. Ids change only when a trial really computes something else:

- a value of a hashed field changes (a new default of an old field changes old trials' configs:
  that is a change of what they compute, and they run again);
- `RESULTS_VERSION` is raised (a change to training or evaluation that alters results);
- a new field is set away from its default.

A new key of a resolution stage is dropped by `to_dict` while it is None, so it must default to
None to keep ids.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from typing import Any

import s3l_core
from s3l_core.config import TrialConfig

# Keys that change where or how fast a trial runs, not what it computes.
UNHASHED_KEYS = ("device", "data_dir", "download", "compile")

# Every `TrialConfig` field (dotted path) as of results version 1 (s3l-sweep 0.1.0).
ID_FIELDS_V1 = frozenset({
    "dataset", "method", "backbone", "backbone.depth", "backbone.width", "backbone.stages", "backbone.stem", "resolution", "epochs",
    "steps", "data_fraction", "batch_size", "optimizer", "optimizer.name", "optimizer.lr", "optimizer.weight_decay", "optimizer.momentum",
    "optimizer.warmup_epochs", "method_params", "method_params.temperature", "method_params.queue_size", "method_params.ema",
    "method_params.projection_dim", "method_params.hidden_dim", "method_params.predictor_hidden_dim", "augment", "augment.min_scale",
    "augment.blur", "augment.color_jitter", "eval", "eval.every", "eval.knn_k", "eval.knn_temperature", "eval.linear_probe",
    "eval.resolution", "eval.floors", "eval.val_fraction", "eval.bn_recalibrate", "eval.finetune", "eval.finetune.epochs",
    "eval.finetune.lr", "seed", "data_dir", "download", "image_size", "device", "compile",
})  # fmt: skip


def trial_id(trial_config: dict[str, Any], config_type: type = TrialConfig) -> str:
    """Stable 12-hex id of a resolved trial config (as `config_type.to_dict()` gives it)."""
    identity = {k: v for k, v in identity_of(trial_config, config_type).items() if k not in UNHASHED_KEYS}
    identity["results_version"] = s3l_core.RESULTS_VERSION
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def identity_of(config: dict[str, Any], config_type: type = TrialConfig, prefix: str = "") -> dict[str, Any]:
    """`config` less the fields newer than `ID_FIELDS_V1` that hold their default."""
    out: dict[str, Any] = {}
    for name, value in config.items():
        path = prefix + name
        nested = _nested_type(config_type, name)
        if path not in ID_FIELDS_V1 and name in _defaults(config_type) and value == _defaults(config_type)[name]:
            continue  # a field added later, at its default: the trial computes what it did before the field existed
        out[name] = identity_of(value, nested, path + ".") if nested is not None and isinstance(value, dict) else value
    return out


@functools.cache
def _defaults(config_type: type) -> dict[str, Any]:
    """Each field's default as `to_dict` writes it (nested dataclasses as dicts)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config_type):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


@functools.cache
def _nested_type(config_type: type, name: str) -> type | None:
    """The dataclass a field holds (`Optional[...]` unwrapped), if it holds one as a mapping."""
    if not dataclasses.is_dataclass(config_type):
        return None
    hint = typing.get_type_hints(config_type).get(name)
    for option in typing.get_args(hint) or (hint,):
        if dataclasses.is_dataclass(option) and typing.get_origin(hint) is not tuple:
            return option
    return None
