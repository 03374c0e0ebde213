"""Trial ids: one per computation, the same across releases that only add fields."""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pytest

from s3l_core.config import DEPTHS, METHOD_NAMES, OPTIMIZERS, STEMS, BackboneConfig, EvalConfig, Stage, TrialConfig, apply_overrides
from s3l_core.dataset_catalog import DATASET_NAMES
from sweeper.study.plan import point_trial_id
from sweeper.study.load import load_study
from sweeper.tune.trainable import TrialContext, trial_id_for
from sweeper.store.trial_identity import UNHASHED_KEYS, trial_id

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parents[1] / "fixtures"
GOLDEN = json.loads((FIXTURES / "trial_ids_0.1.0.json").read_text())["trials"]


def base_config() -> dict[str, Any]:
    return TrialConfig.from_dict({"resolution": [{"resolution": 8, "epochs": 2}, {"resolution": 14, "epochs": 1}],
                                  "eval": {"finetune": {"epochs": 2}}}).to_dict()


@pytest.mark.parametrize("row", GOLDEN, ids=lambda row: f"{row['study']}:{row['trial_id']}")
def test_every_shipped_trial_of_release_0_1_0_keeps_its_id(row: dict[str, Any]) -> None:
    """Ids written by 0.1.0 (every trial of every shipped study then) are ids today: its stores are reused."""
    assert trial_id(TrialConfig.from_dict(row["config"]).to_dict()) == row["trial_id"]


def _set(config: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(config)
    node = out
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def test_where_and_how_fast_a_trial_runs_keeps_its_id() -> None:
    config = base_config()
    for key, value in {"device": "cuda:1", "data_dir": "/elsewhere", "download": True, "compile": True}.items():
        assert trial_id(_set(config, key, value)) == trial_id(config), key


def _get(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = node[part]
    return node


# A later release's config: one new top-level knob and one new nested one, each with a default
# that computes what the release before computed.
@dataclasses.dataclass(frozen=True)
class _NextEval(EvalConfig):
    new_probe_setting: float = 0.5


@dataclasses.dataclass(frozen=True)
class _NextTrialConfig(TrialConfig):
    new_knob: int = 3
    eval: _NextEval = dataclasses.field(default_factory=_NextEval)


def _next_config(**changes: Any) -> dict[str, Any]:
    config = base_config()
    next_config = {**config, "new_knob": 3, "eval": {**config["eval"], "new_probe_setting": 0.5}}
    for path, value in changes.items():
        next_config = _set(next_config, path, value)
    return next_config


def test_a_release_that_adds_fields_at_their_defaults_keeps_every_id() -> None:
    assert trial_id(_next_config(), _NextTrialConfig) == trial_id(base_config())


@pytest.mark.parametrize("path, value", [("new_knob", 4), ("eval.new_probe_setting", 0.25)])
def test_a_new_field_away_from_its_default_is_a_new_trial(path: str, value: Any) -> None:
    assert trial_id(_next_config(**{path: value}), _NextTrialConfig) != trial_id(base_config())


def test_a_store_written_by_release_0_1_0_is_reused_without_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fixture store (two finished trials, written by `run` at 0.1.0) needs nothing run again."""
    import shutil

    import yaml

    from sweeper.cli import main

    shutil.copytree(FIXTURES / "store-0.1.0" / "upgrade-v1", tmp_path / "runs" / "upgrade-v1")
    study = yaml.safe_load((FIXTURES / "store-0.1.0" / "upgrade-v1" / "study.yaml").read_text())
    study.update(storage=str(tmp_path / "runs"), report=str(tmp_path / "reports"))
    path = tmp_path / "upgrade-v1.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 trials, 2 already finished in the store, 0 would run." in out, out


# ---------------------------------------------------------------- every knob, as a sweep point
# The id property over the config class itself, not over one config's keys: every field of
# `TrialConfig`, nested dataclasses and resolution stages included, is changed alone to a valid
# other value through a sweep point, and both id functions (the plan's and the trainable's) must
# agree and give a new id. A field added to the class without a way to change it here fails
# `test_every_field_of_the_config_class_is_a_knob_of_the_property` until one is written.

STAGE = "resolution[]."  # a field of each resolution stage
# Every setting of a base trial written out (none left to a default but those the walk must
# reach through their None), so a change of any one is visible in the resolved config.
KNOB_BASE: dict[str, Any] = {
    "dataset": "fashion-mnist-sample", "method": "simclr", "backbone": {"depth": 10, "width": 0.25, "stages": 4, "stem": "auto"},
    "resolution": 14, "epochs": 2, "batch_size": 64, "data_fraction": 0.5, "seed": 0,
    "eval": {"every": 1, "finetune": {"epochs": 2, "lr": 0.05}},
}  # fmt: skip
# Fields whose valid values are a closed set: the other value is the first different one.
CHOICES: dict[str, tuple[Any, ...]] = {
    "dataset": DATASET_NAMES, "method": METHOD_NAMES, "backbone.depth": DEPTHS, "backbone.stages": (3, 4),
    "backbone.stem": STEMS, "optimizer.name": OPTIMIZERS,
}  # fmt: skip
# Fields that need a base of their own to change alone: (base point, changed point).
STAGES_2_1 = [{"resolution": 8, "epochs": 2}, {"resolution": 14, "epochs": 1}]
STAGED = {"epochs": None, "resolution": STAGES_2_1}  # the stages give the run length
SPECIAL: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "steps": ({}, {"epochs": None, "steps": 20}),  # the run length in steps instead of epochs
    "eval.finetune": ({}, {"eval.finetune": None}),  # no fine-tuning at all
    STAGE + "resolution": (STAGED, {"resolution": [{"resolution": 10, "epochs": 2}, STAGES_2_1[1]]}),
    STAGE + "epochs": (STAGED, {"resolution": [{"resolution": 8, "epochs": 3}, STAGES_2_1[1]]}),
    STAGE + "steps": (STAGED, {"resolution": [{"resolution": 8, "steps": 2}, {"resolution": 14, "steps": 1}]}),
    # fractions resolve to whole epochs (what is computed): a new split of the same run is a new trial
    STAGE + "fraction": ({"epochs": 4, "resolution": [{"resolution": 8, "fraction": 0.5}, {"resolution": 14, "fraction": 0.5}]},
                         {"resolution": [{"resolution": 8, "fraction": 0.25}, {"resolution": 14, "fraction": 0.75}]}),
}  # fmt: skip


def _class_paths(config_type: type, prefix: str = "") -> list[str]:
    """Every field of a config class as a dotted path, recursing into nested dataclasses (an
    optional one is also a knob of its own: set or None) and into a resolution stage's fields."""
    out: list[str] = []
    hints = typing.get_type_hints(config_type)
    for f in dataclasses.fields(config_type):
        options = typing.get_args(hints[f.name]) or (hints[f.name],)
        nested = [o for o in options if dataclasses.is_dataclass(o)]
        stages = [typing.get_args(o)[0] for o in options if typing.get_origin(o) is tuple]
        if nested:
            out += ([prefix + f.name] if type(None) in options else []) + _class_paths(nested[0], f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
        out += [STAGE + s.name for s in dataclasses.fields(stages[0])] if stages else []
    return out


def _other_value(path: str, current: Any) -> Any:
    """A valid value of the field at `path` other than `current` (its resolved value)."""
    if path in CHOICES:
        return next(v for v in CHOICES[path] if v != current)
    if isinstance(current, bool):
        return not current
    if isinstance(current, int):
        return current + 1
    if isinstance(current, float):
        return current / 2  # halving keeps every (0, 1] share and [0, 1) decay valid
    if current is None:  # an optional number or flag left to its preset: set it
        return {"augment.blur": True, "eval.resolution": 12, "optimizer.warmup_epochs": 1.0}.get(path, 0.5 if "augment." in path else 16)
    raise AssertionError(f"no other value for {path}={current!r}")


def _knob_cases(study_base: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """For each field of `TrialConfig` that is hashed: (base point, the point that changes it alone)."""
    resolved = TrialConfig.from_dict(study_base).to_dict()
    cases = {}
    for path in _class_paths(TrialConfig):
        if path in UNHASHED_KEYS or path in ("image_size",):
            continue  # image_size: only an imagefolder dataset has one (its own test below)
        cases[path] = SPECIAL.get(path) or ({}, {path: _other_value(path, _get(resolved, path))})
    return cases


def _knob_study(base: dict[str, Any]):
    study = load_study(REPO / "studies" / "quickstart.yaml")
    return dataclasses.replace(study, base_trial=copy.deepcopy(base))


def _ids(study: Any, point: dict[str, Any]) -> set[str]:
    """The point's id by the plan and by the trainable, on a CPU-only and on a GPU trial."""
    contexts = [TrialContext("/unused", study, 1, gpu) for gpu in (0, 0.5)]
    return {point_trial_id(study, point), *(trial_id_for(c, point) for c in contexts)}


def test_every_field_of_the_config_class_is_a_knob_of_the_property() -> None:
    paths = set(_class_paths(TrialConfig))
    assert {"backbone.stem", "eval.finetune.lr", "eval.finetune", STAGE + "fraction", "method_params.predictor_hidden_dim"} <= paths
    assert paths == set(_knob_cases(KNOB_BASE)) | set(UNHASHED_KEYS) | {"image_size"}


def test_each_knob_changed_alone_to_a_valid_value_is_a_new_trial_by_both_id_functions() -> None:
    study = _knob_study(KNOB_BASE)
    (base_id,) = _ids(study, {})
    seen = {base_id: "the base"}
    for path, (before, after) in _knob_cases(KNOB_BASE).items():
        old, new = _ids(study, before), _ids(study, {**before, **after})
        assert len(old) == 1 and len(new) == 1, f"{path}: the plan and the trainable disagree: {old} vs {new}"
        assert old != new, f"changing {path} alone kept the id {old}"
        if path not in SPECIAL:  # the point set what it meant to, not a neighbour
            assert _get(study.trial_config(after).to_dict(), path) == after[path], path
        if not before:  # on the common base, no two knobs may collide either
            (tid,) = new
            assert tid not in seen, f"changing {path} gave the id of changing {seen.get(tid)}"
            seen[tid] = path


def test_an_imagefolders_cache_size_is_a_knob(tmp_path: Path) -> None:
    study = _knob_study({**KNOB_BASE, "dataset": f"imagefolder:{tmp_path}"})
    old, new = _ids(study, {}), _ids(study, {"image_size": 64})
    assert len(old) == len(new) == 1 and old != new


# ---------------------------------------------------------------- the upgrade rule, in every class
# A later release may add a field to any class of the config tree; at its default (None for a
# stage's, which `to_dict` then drops) no id changes, and set away from it the id does.


def _grown(config_type: type, where: str, prefix: str = "") -> type:
    """`config_type` with a new field `new_setting` in the class at dotted path `where` ("" for
    `TrialConfig` itself, `STAGE` for a resolution stage), as a later release might add it."""
    hints = typing.get_type_hints(config_type)
    added: list[tuple[str, Any, Any]] = []
    if prefix == where:
        added.append(("new_setting", int | None, dataclasses.field(default=None if config_type is Stage else 3)))
    for f in dataclasses.fields(config_type):
        options = typing.get_args(hints[f.name]) or (hints[f.name],)
        nested = next((o for o in options if dataclasses.is_dataclass(o)), None)
        if nested is not None and where.startswith(f"{prefix}{f.name}."):
            grown = _grown(nested, where, f"{prefix}{f.name}.")
            optional = type(None) in options
            added.append((f.name, grown | None if optional else grown, dataclasses.field(default=None) if optional else dataclasses.field(default_factory=grown)))
        elif any(typing.get_origin(o) is tuple for o in options) and where == STAGE:
            added.append((f.name, int | tuple[_grown(Stage, STAGE, STAGE), ...], dataclasses.field(default=f.default)))
    return dataclasses.make_dataclass(f"Next{config_type.__name__}", added, bases=(config_type,), frozen=True)


def _config_classes(config_type: type = TrialConfig, prefix: str = "") -> list[str]:
    """The dotted path of every class in the config tree ("" for `TrialConfig`, `STAGE` for a stage)."""
    out = [prefix]
    hints = typing.get_type_hints(config_type)
    for f in dataclasses.fields(config_type):
        options = typing.get_args(hints[f.name]) or (hints[f.name],)
        nested = next((o for o in options if dataclasses.is_dataclass(o)), None)
        out += _config_classes(nested, f"{prefix}{f.name}.") if nested is not None else []
        out += [STAGE] if any(typing.get_origin(o) is tuple for o in options) else []
    return out


def test_the_config_tree_has_the_classes_the_upgrade_test_grows() -> None:
    assert _config_classes() == ["", "backbone.", STAGE, "optimizer.", "method_params.", "augment.", "eval.", "eval.finetune."]
    assert _grown(TrialConfig, "eval.finetune.")().eval.finetune is None  # an optional class stays optional
    assert isinstance(_grown(TrialConfig, "backbone.")().backbone, BackboneConfig)


@pytest.mark.parametrize("where", _config_classes(), ids=lambda w: w.rstrip(".") or "TrialConfig")
def test_a_new_field_at_its_default_in_any_class_keeps_the_id_and_away_from_it_changes_it(where: str) -> None:
    base = {**KNOB_BASE, "epochs": None, "resolution": STAGES_2_1}  # stages, so a stage's field has somewhere to be
    grown = _grown(TrialConfig, where)
    at_default = grown.from_dict(base).to_dict()
    assert trial_id(at_default, grown) == trial_id(TrialConfig.from_dict(base).to_dict())
    if where == STAGE:
        assert all("new_setting" not in stage for stage in at_default["resolution"])  # None: `to_dict` drops it
        away = {**base, "resolution": [{**STAGES_2_1[0], "new_setting": 4}, STAGES_2_1[1]]}
    else:
        assert _get(at_default, where + "new_setting") == 3  # the grown class really has the field
        away = apply_overrides(base, {where + "new_setting": 4})
    assert trial_id(grown.from_dict(away).to_dict(), grown) != trial_id(at_default, grown)
