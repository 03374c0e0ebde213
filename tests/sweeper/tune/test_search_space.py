"""The study's space in Ray Tune's form, and a sampled config back into a point."""

from __future__ import annotations

from pathlib import Path

from sweeper.study.load import load_study
from sweeper.tune.search_space import from_ray_config, to_ray_space
from tests.sweeper.study.test_space import REPO, STAGES, _study


def test_to_ray_space_and_back(tmp_path: Path):
    from ray.tune.search.sample import Categorical, Float, Integer

    study = _study(tmp_path)
    space = to_ray_space(study)
    assert list(space) == list(study.space)
    assert space["method"] == {"grid_search": ["simclr", "byol"]}
    assert isinstance(space["resolution"], Categorical)
    assert all(isinstance(c, str) for c in space["resolution"].categories)  # Optuna takes only scalars
    assert isinstance(space["backbone.width"], Float) and (space["backbone.width"].lower, space["backbone.width"].upper) == (0.25, 1.0)
    assert type(space["optimizer.lr"].get_sampler()).__name__ == "_LogUniform"
    assert isinstance(space["epochs"], Integer) and (space["epochs"].lower, space["epochs"].upper) == (1, 4)

    sampled = {
        "resolution": space["resolution"].categories[2], "backbone.width": 0.5, "optimizer.lr": 0.1,
        "epochs": 2, "method": "byol", "seed": 1,
    }
    point = from_ray_config(study, sampled)
    assert point["resolution"] == STAGES
    assert point["seed"] == 1
    study.trial_config(point)


def test_optuna_space_has_no_grid_search():
    study = load_study(REPO / "studies" / "s3l.yaml")
    space = to_ray_space(study)
    assert not any(isinstance(v, dict) for v in space.values())
