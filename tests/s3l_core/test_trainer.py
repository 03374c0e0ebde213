"""The trainer end to end on the shipped Fashion-MNIST sample (CPU, tiny settings)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from s3l_core.checkpoint import CHECKPOINT_NAME, CheckpointError
from s3l_core.config import TrialConfig
from s3l_core.cost import train_step_flops
from s3l_core.data import load_dataset
from s3l_core.trainer import learning_rate, train

TINY = {
    "dataset": "fashion-mnist-sample",
    "backbone": {"depth": 10, "width": 0.125},
    "resolution": 12,
    "epochs": 3,
    "data_fraction": 0.03,
    "batch_size": 64,
    "eval": {"every": 1, "knn_k": 20, "resolution": 12},
    "device": "cpu",
}


@pytest.fixture(scope="module")
def sample():
    return load_dataset("fashion-mnist-sample")


def tiny(**overrides) -> TrialConfig:
    raw = {**TINY, **overrides}
    return TrialConfig.from_dict(raw)


def test_train_reports_every_metric_and_beats_chance(sample):
    seen = []
    result = train(tiny(), on_epoch=lambda record, path: seen.append(record), dataset=sample)
    assert [r.epoch for r in seen] == [1, 2, 3]
    assert all(r.knn_top1 is not None for r in seen)
    assert result.knn_top1 == seen[-1].knn_top1
    assert result.knn_top1_best == max(r.knn_top1 for r in seen)
    assert 0.2 < result.knn_top1 <= 1.0  # 10 classes: chance is 0.1
    assert result.linear_top1 is not None and result.linear_top1 > 0.2
    assert 0.2 < result.knn_pixels_top1 <= 1.0 and 0.1 < result.knn_random_top1 <= 1.0
    assert result.train_pflops > 0 and result.eval_pflops > 0
    assert result.img_per_s > 0 and result.wall_s > 0 and result.device == "cpu"
    assert math.isclose(seen[-1].train_pflops_cum, result.train_pflops)


def test_resumed_run_matches_uninterrupted_run(sample, tmp_path: Path):
    config = tiny(epochs=3, eval={"every": 1, "knn_k": 20, "resolution": 12, "floors": False})
    straight = train(config, dataset=sample)

    class Interrupt(Exception):
        pass

    def stop_after_two(record, _path):
        if record.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, on_epoch=stop_after_two, checkpoint_dir=tmp_path, dataset=sample)
    resumed = train(config, resume_from=tmp_path / CHECKPOINT_NAME, checkpoint_dir=tmp_path, dataset=sample)
    assert resumed.resumed_from_epoch == 2
    assert [r.loss for r in resumed.epochs] == [r.loss for r in straight.epochs]
    assert [r.knn_top1 for r in resumed.epochs] == [r.knn_top1 for r in straight.epochs]
    assert resumed.linear_top1 == straight.linear_top1
    assert resumed.train_pflops == pytest.approx(straight.train_pflops)


def test_resume_refuses_a_checkpoint_of_another_config(sample, tmp_path: Path):
    train(tiny(epochs=1, eval={"every": 1, "knn_k": 5, "linear_probe": False, "floors": False}), checkpoint_dir=tmp_path, dataset=sample)
    with pytest.raises(CheckpointError, match="different trial config"):
        train(tiny(epochs=2, seed=5), resume_from=tmp_path / CHECKPOINT_NAME, dataset=sample)


def test_corrupt_checkpoint_is_a_clear_error(sample, tmp_path: Path):
    bad = tmp_path / CHECKPOINT_NAME
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="unreadable"):
        train(tiny(), resume_from=bad, dataset=sample)


def test_resolution_stages_train_at_each_resolution(sample):
    config = tiny(resolution=[{"resolution": 8, "epochs": 2}, {"resolution": 12, "epochs": 1}], eval={"every": 3, "knn_k": 10, "linear_probe": False, "floors": False})
    result = train(config, dataset=sample)
    assert [r.resolution for r in result.epochs] == [8, 8, 12]
    assert [r.knn_top1 is not None for r in result.epochs] == [False, False, True]


@pytest.mark.parametrize("method", ["moco_v2", "byol", "simsiam", "supervised"])
def test_every_method_trains_through_the_trainer(sample, method):
    result = train(tiny(method=method, epochs=1, eval={"every": 1, "knn_k": 10, "linear_probe": False, "floors": False}), dataset=sample)
    assert math.isfinite(result.epochs[0].loss) and 0 <= result.knn_top1 <= 1


def test_step_flops_grow_with_resolution_squared():
    # width 0.5 so the fixed-size projector is a small share of the step, as in real studies
    c = tiny(backbone={"depth": 18, "width": 0.5})
    flops = {r: train_step_flops("simclr", c.backbone, c.method_params, 1, 10, 32, r, 32) for r in (8, 16, 32)}
    assert flops[16] / flops[8] == pytest.approx(4, rel=0.1)
    assert flops[32] / flops[16] == pytest.approx(4, rel=0.1)


def test_learning_rate_warms_up_then_decays_to_zero():
    lrs = [learning_rate(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < 0.01


def test_floors_are_computed_once_per_dataset_architecture_and_seed(sample, monkeypatch):
    import s3l_core.trainer as trainer

    calls = []
    real = trainer.pixel_features
    monkeypatch.setattr(trainer, "pixel_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(trainer, "_FLOOR_CACHE", {})
    quick = {"every": 1, "knn_k": 10, "linear_probe": False, "resolution": 12}
    first = train(tiny(epochs=1, resolution=8, eval=quick), dataset=sample)
    second = train(tiny(epochs=1, resolution=12, eval=quick), dataset=sample)  # same stem, eval, seed
    assert len(calls) == 2  # train + test pixels, once
    assert (first.knn_pixels_top1, first.knn_random_top1) == (second.knn_pixels_top1, second.knn_random_top1)
    train(tiny(epochs=1, resolution=8, seed=1, eval=quick), dataset=sample)
    assert len(calls) == 4  # another seed: another random encoder
