"""Sweep-space expansion: grid and random points, applying points."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sweeper.study.space import grid_points, points, random_points
from sweeper.study.load import load_study
from sweeper.study.model import Study

REPO = Path(__file__).resolve().parents[3]
STAGES = [{"resolution": 14, "fraction": 0.8}, {"resolution": 28, "fraction": 0.2}]

RANDOM_STUDY = """\
name: random
dataset: fashion-mnist-sample
trial: {epochs: 2}
objectives: {knn_top1: max}
search: {algorithm: random, num_samples: 8, seed: 3}
seeds: [0, 1]
space:
  resolution: {choice: [14, 28, [{resolution: 14, fraction: 0.8}, {resolution: 28, fraction: 0.2}]]}
  backbone.width: {uniform: [0.25, 1.0]}
  optimizer.lr: {loguniform: [0.05, 1.0]}
  epochs: {int: [1, 3]}
  method: {grid: [simclr, byol]}
"""


def _study(tmp_path: Path, text: str = RANDOM_STUDY) -> Study:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return load_study(path)


def test_grid_points_are_the_product_times_seeds_in_file_order():
    study = load_study(REPO / "studies" / "depth.yaml")
    got = grid_points(study)
    assert len(got) == 4 * 2 * 3
    assert got[:4] == [
        {"backbone.depth": 10, "backbone.stages": 3, "seed": 0},
        {"backbone.depth": 10, "backbone.stages": 3, "seed": 1},
        {"backbone.depth": 10, "backbone.stages": 3, "seed": 2},
        {"backbone.depth": 10, "backbone.stages": 4, "seed": 0},
    ]
    assert got == grid_points(load_study(REPO / "studies" / "depth.yaml"))
    assert points(study) == got


def test_grid_points_without_space_is_one_point_per_seed():
    study = load_study(REPO / "studies" / "resolution.yaml")
    study = dataclasses.replace(study, space={})
    assert grid_points(study) == [{"seed": 0}, {"seed": 1}, {"seed": 2}]


def test_grid_points_refuse_distributions(tmp_path: Path):
    with pytest.raises(ValueError, match="grid and choice"):
        grid_points(_study(tmp_path))


def test_random_points_are_deterministic_and_valid(tmp_path: Path):
    study = _study(tmp_path)
    got = random_points(study, 8, 3)
    assert len(got) == 8 * 2 * 2  # samples x grid values x seeds
    assert got == random_points(_study(tmp_path), 8, 3)
    assert got != random_points(study, 8, 4)
    assert points(study) == got
    for point in got:
        assert list(point) == ["resolution", "backbone.width", "optimizer.lr", "epochs", "method", "seed"]
        assert 0.25 <= point["backbone.width"] <= 1.0
        assert 0.05 <= point["optimizer.lr"] <= 1.0
        assert point["epochs"] in (1, 2, 3) and isinstance(point["epochs"], int)
        study.trial_config(point)  # raises if invalid
    # grid values and seeds vary fastest within one sample
    assert [(p["method"], p["seed"]) for p in got[:4]] == [("simclr", 0), ("simclr", 1), ("byol", 0), ("byol", 1)]
    assert len({p["backbone.width"] for p in got[:4]}) == 1


def test_random_points_are_the_same_on_every_machine(tmp_path: Path):
    # Pinned values: a change here changes every random study's trial hashes.
    first = random_points(_study(tmp_path), 1, 3)[0]
    assert first == {
        "resolution": PINNED["resolution"], "backbone.width": PINNED["backbone.width"],
        "optimizer.lr": PINNED["optimizer.lr"], "epochs": PINNED["epochs"], "method": "simclr", "seed": 0,
    }


PINNED = {"resolution": STAGES, "backbone.width": 0.320111, "optimizer.lr": 0.101082, "epochs": 1}


def test_more_samples_keep_the_earlier_ones(tmp_path: Path):
    study = _study(tmp_path)
    assert random_points(study, 12, 3)[: 8 * 4] == random_points(study, 8, 3)


def test_adding_a_knob_keeps_the_other_draws(tmp_path: Path):
    before = random_points(_study(tmp_path), 5, 3)
    after = random_points(_study(tmp_path, RANDOM_STUDY + "  eval.knn_k: {int: [10, 200]}\n"), 5, 3)
    assert [{k: v for k, v in p.items() if k != "eval.knn_k"} for p in after] == before


def test_int_draws_reach_both_bounds(tmp_path: Path):
    drawn = {p["epochs"] for p in random_points(_study(tmp_path), 60, 0)}
    assert drawn == {1, 2, 3}


def test_points_refuse_optuna():
    with pytest.raises(ValueError, match="to_ray_space"):
        points(load_study(REPO / "studies" / "s3l.yaml"))
