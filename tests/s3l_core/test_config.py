"""TrialConfig.from_dict: every problem at once, with its dotted path."""

from __future__ import annotations

import pytest

from s3l_core.config import ConfigError, TrialConfig, apply_overrides


def problems(raw: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict(raw)
    return {p.path: p.message for p in caught.value.problems}


def test_defaults_and_round_trip():
    config = TrialConfig.from_dict({})
    assert config.method == "simclr" and config.backbone.width == 1.0 and config.stage_plan() == [(28, 50)]
    assert TrialConfig.from_dict(config.to_dict()) == config


def test_every_problem_is_reported_with_its_path():
    found = problems({"metod": "simclr", "backbone": {"widht": 1}, "data_fraction": 1.5, "resolution": 0, "epochs": "ten"})
    assert "did you mean 'method'" in found["metod"]
    assert "did you mean 'width'" in found["backbone.widht"]
    assert found["data_fraction"] == "1.5 must be in (0, 1]"
    assert "positive integer" in found["resolution"]
    assert "'ten' (str) is not an integer" in found["epochs"]


def test_types_are_strict_but_whole_floats_are_integers():
    assert TrialConfig.from_dict({"epochs": 10.0}).epochs == 10
    assert "is not an integer" in problems({"epochs": 10.5})["epochs"]
    assert "is not true/false" in problems({"eval": {"linear_probe": "yes"}})["eval.linear_probe"]
    assert "is not a number" in problems({"backbone": {"width": True}})["backbone.width"]


def test_stage_fractions_resolve_to_whole_epochs_covering_the_run():
    config = TrialConfig.from_dict({"epochs": 10, "resolution": [{"resolution": 14, "fraction": 0.8}, {"resolution": 28, "fraction": 0.2}]})
    assert config.stage_plan() == [(14, 8), (28, 2)] and config.epochs == 10 and config.max_resolution == 28
    explicit = TrialConfig.from_dict({"resolution": [{"resolution": 14, "epochs": 3}, {"resolution": 28, "epochs": 1}]})
    assert explicit.epochs == 4


def test_bad_stages_are_refused():
    assert "sum to 0.9" in problems({"resolution": [{"resolution": 14, "fraction": 0.5}, {"resolution": 28, "fraction": 0.4}]})["resolution"]
    assert "exactly one of" in problems({"resolution": [{"resolution": 14, "epochs": 2}, {"resolution": 28, "fraction": 0.4}]})["resolution"]
    assert "did you mean 'fashion-mnist'" in problems({"dataset": "fashion-mnst"})["dataset"]


def test_apply_overrides_sets_dotted_keys_in_a_copy():
    stages = [{"resolution": 14, "epochs": 8}, {"resolution": 28, "epochs": 2}]
    base = {"dataset": "digits", "backbone": {"depth": 18}, "epochs": 5}
    out = apply_overrides(base, {"backbone.width": 0.5, "optimizer.lr": 0.1, "resolution": stages, "seed": 2})
    assert out == {
        "dataset": "digits", "backbone": {"depth": 18, "width": 0.5}, "epochs": 5,
        "optimizer": {"lr": 0.1}, "resolution": stages, "seed": 2,
    }
    assert base == {"dataset": "digits", "backbone": {"depth": 18}, "epochs": 5}
    out["resolution"][0]["resolution"] = 99
    assert stages[0]["resolution"] == 14
