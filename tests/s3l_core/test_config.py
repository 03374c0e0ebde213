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


def test_run_length_in_steps_and_stage_fractions_of_steps():
    config = TrialConfig.from_dict({"steps": 100, "resolution": [{"resolution": 14, "fraction": 0.75}, {"resolution": 28, "fraction": 0.25}]})
    assert config.length_unit == "steps" and config.stage_plan() == [(14, 75), (28, 25)] and config.epochs is None
    explicit = TrialConfig.from_dict({"resolution": [{"resolution": 14, "steps": 30}, {"resolution": 28, "steps": 10}]})
    assert explicit.steps == 40 and explicit.epochs is None
    assert "not both" in problems({"epochs": 3, "steps": 30})["steps"]
    assert "add up to 2 epochs, but epochs is 3" in problems({"epochs": 3, "resolution": [{"resolution": 14, "epochs": 2}]})["epochs"]
    assert TrialConfig.from_dict({"epochs": 2, "resolution": [{"resolution": 14, "epochs": 2}]}).epochs == 2
    assert "but steps is 5" in problems({"steps": 5, "resolution": [{"resolution": 14, "epochs": 2}]})["steps"]


def test_method_recipes_fill_what_a_study_leaves_unset():
    simclr = TrialConfig.from_dict({"method": "simclr", "backbone": {"width": 0.5}})
    assert (simclr.optimizer.name, simclr.optimizer.lr, simclr.optimizer.weight_decay) == ("lars", 0.4, 1e-5)
    assert (simclr.method_params.hidden_dim, simclr.method_params.projection_dim) == (1024, 128)  # hidden scales with width
    simsiam = TrialConfig.from_dict({"method": "simsiam", "backbone": {"width": 0.25}})
    assert simsiam.optimizer.name == "sgd"
    assert (simsiam.method_params.hidden_dim, simsiam.method_params.projection_dim, simsiam.method_params.predictor_hidden_dim) == (512, 512, 128)
    moco = TrialConfig.from_dict({"method": "moco_v2", "optimizer": {"lr": 0.2, "name": "lars"}})
    assert (moco.optimizer.name, moco.optimizer.lr) == ("lars", 0.2)  # what a study sets wins
    assert TrialConfig.from_dict(moco.to_dict()) == moco


def test_new_settings_are_checked():
    found = problems({"eval": {"val_fraction": 0.0, "finetune": {"epochs": 0}}, "backbone": {"stem": "vit"}, "optimizer": {"name": "adam"}, "image_size": 64})
    assert "(0, 0.5]" in found["eval.val_fraction"]
    assert "positive integer" in found["eval.finetune.epochs"]
    assert "auto, cifar, imagenet" in found["backbone.stem"]
    assert "sgd, lars" in found["optimizer.name"]
    assert "imagefolder" in found["image_size"]
    assert TrialConfig.from_dict({"eval": {"finetune": {"epochs": 2}}}).eval.finetune.lr == 0.05
