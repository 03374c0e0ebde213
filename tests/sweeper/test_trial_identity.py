"""Trial ids: one per computation, the same across releases that only add fields."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from s3l_core.config import EvalConfig, TrialConfig
from sweeper.trial_identity import UNHASHED_KEYS, trial_id

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = json.loads((FIXTURES / "trial_ids_0.1.0.json").read_text())["trials"]


def base_config() -> dict[str, Any]:
    return TrialConfig.from_dict({"resolution": [{"resolution": 8, "epochs": 2}, {"resolution": 14, "epochs": 1}],
                                  "eval": {"finetune": {"epochs": 2}}}).to_dict()


@pytest.mark.parametrize("row", GOLDEN, ids=lambda row: f"{row['study']}:{row['trial_id']}")
def test_every_shipped_trial_of_release_0_1_0_keeps_its_id(row: dict[str, Any]) -> None:
    """Ids written by 0.1.0 (every trial of every shipped study then) are ids today: its stores are reused."""
    assert trial_id(TrialConfig.from_dict(row["config"]).to_dict()) == row["trial_id"]


def _leaf_paths(config: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in config.items():
        if isinstance(value, dict):
            out += _leaf_paths(value, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, list):
        return [*value, {"resolution": 28, "epochs": 1}]
    return 1  # None


def _set(config: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(config)
    node = out
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def test_changing_any_setting_that_is_computed_changes_the_id() -> None:
    config = base_config()
    paths = _leaf_paths(config)
    assert {"eval.finetune.lr", "method_params.queue_size", "augment.min_scale", "resolution"} <= set(paths)  # nested ones too
    base = trial_id(config)
    seen = {base: "base"}
    for path in paths:
        if path in UNHASHED_KEYS:
            continue
        tid = trial_id(_set(config, path, _changed(_get(config, path))))
        assert tid not in seen, f"changing {path} gave the id of {seen.get(tid)}"
        seen[tid] = path


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
