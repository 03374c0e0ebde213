"""The cost model's prediction against the trainer's measured FLOPs."""

from __future__ import annotations

import pytest

from s3l_core.backbone import stem_for
from s3l_core.config import TrialConfig
from s3l_core.data import load_dataset
from s3l_core.schedule import plan_run
from s3l_core.splits import trial_splits
from s3l_core.cost import train_step_flops
from sweeper.estimate.cost_model import dataset_shape, makespan, predicted_eval_pflops, predicted_gpu_hours, predicted_train_pflops


def config(**raw) -> TrialConfig:
    return TrialConfig.from_dict({"dataset": "fashion-mnist-sample", "epochs": 2, "batch_size": 256, **raw})


def measured_pflops(c: TrialConfig) -> float:
    """What the trainer counts: each stage's steps on the real splits, with the dataset's stem."""
    data = load_dataset(c.dataset)
    splits = trial_splits(data, c.eval.val_fraction, c.data_fraction, c.seed)
    plan = plan_run(c, splits.pretrain_size, splits.full_pool_size)
    stem = stem_for(data.native_size, c.backbone.stem)
    return sum(
        train_step_flops(c.method, c.backbone, c.method_params, data.channels, data.num_classes, stem, stage.resolution, plan.batch_size,
                         splits.pretrain_size) * stage.steps
        for stage in plan.stages
    ) / 1e15


@pytest.mark.parametrize("raw", [
    {"resolution": 28}, {"resolution": 14, "backbone": {"width": 0.5}}, {"resolution": 32, "backbone": {"depth": 10, "width": 0.25}},
    {"resolution": 14, "data_fraction": 0.05, "steps": 40, "epochs": None},
    {"resolution": [{"resolution": 8, "fraction": 0.75}, {"resolution": 16, "fraction": 0.25}], "epochs": 4, "backbone": {"width": 0.5}},
    # the quickstart's arm: its strided stages round 7, 3.5, 1.75 up, which resolution squared from 32 px missed by 16%
    {"resolution": 14, "backbone": {"depth": 10, "width": 0.25}, "batch_size": 64},
    # MoCo on 90 images: its queue is capped at 90 keys in training; the uncapped 4096 counted 1.84x
    {"method": "moco_v2", "resolution": 14, "data_fraction": 0.01, "batch_size": 64, "backbone": {"depth": 10, "width": 0.25}},
])
def test_prediction_is_within_a_tenth_of_the_measured_flops(raw):
    c = config(**raw)
    assert predicted_train_pflops(c) == pytest.approx(measured_pflops(c), rel=0.1)


def test_prediction_scales_with_width_resolution_and_epochs():
    base = predicted_train_pflops(config(resolution=16, backbone={"width": 0.5}))
    assert predicted_train_pflops(config(resolution=32, backbone={"width": 0.5})) == pytest.approx(4 * base, rel=0.02)
    # x4 for the encoder; the projector's hidden layer scales with width too (linearly), a small share
    assert predicted_train_pflops(config(resolution=16, backbone={"width": 1.0})) == pytest.approx(4 * base, rel=0.01)
    assert predicted_train_pflops(config(resolution=16, backbone={"width": 0.5}, epochs=4)) == pytest.approx(2 * base)


def test_gpu_hours_charge_the_fraction_held():
    assert predicted_gpu_hours(86.4, 1.0) == pytest.approx(1.0)  # 86.4 PFLOP at 24 TFLOP/s = 1 h
    assert predicted_gpu_hours(86.4, 0.25) == pytest.approx(0.25)
    assert predicted_gpu_hours(86.4, 0.0) == 0.0


def test_imagefolder_size_is_counted_from_the_files(tmp_path):
    for cls, n in (("cat", 3), ("dog", 2)):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "train" / cls / f"{i}.png").write_bytes(b"")
    assert dataset_shape(f"imagefolder:{tmp_path}") == (5, 3, 2)


def test_imagefolder_is_counted_as_the_loader_lists_it(tmp_path):
    """Nested folders count, hidden files and folders and non-images do not: the same images
    `list_imagefolder` trains and evaluates on."""
    from s3l_core.imagefolder import list_imagefolder

    for split, cls, name in (("train", "cat", "a.png"), ("train", "cat", "deep/b.jpg"), ("train", "cat", ".c.png"),
                             ("train", "dog", "d.png"), ("train", "dog", "notes.txt"), ("train", ".hidden", "e.png"),
                             ("val", "cat", "f.png"), ("val", "dog", "sub/g.png"), ("val", "dog", ".h.png")):
        (tmp_path / split / cls / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / split / cls / name).write_bytes(b"")
    classes, train, val = list_imagefolder(tmp_path, "t")
    assert dataset_shape(f"imagefolder:{tmp_path}") == (len(train), 3, len(classes)) == (3, 3, 2)
    test_config = TrialConfig.from_dict({"dataset": f"imagefolder:{tmp_path}", "epochs": 1, "batch_size": 8, "image_size": 32})
    from sweeper.estimate.cost_model import _test_images

    assert _test_images(test_config) == len(val) == 2


def test_an_imagefolder_is_listed_once_per_process(tmp_path, monkeypatch):
    """A study's estimate asks for the dataset's size several times per trial; listing a large
    folder each time took most of `estimate` (24 trials on 30,000 files: 23.9 s, 7.8 s listed once)."""
    import s3l_core.imagefolder
    from sweeper.estimate.cost_model import _imagefolder_sizes

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            (tmp_path / split / cls / "0.png").write_bytes(b"")
    listings = []
    real = s3l_core.imagefolder.split_sizes
    monkeypatch.setattr(s3l_core.imagefolder, "split_sizes", lambda root: listings.append(root) or real(root))
    _imagefolder_sizes.cache_clear()
    for resolution in (8, 16, 32):
        trial = TrialConfig.from_dict({"dataset": f"imagefolder:{tmp_path}", "epochs": 1, "batch_size": 8, "image_size": 32, "resolution": resolution})
        predicted_train_pflops(trial), predicted_eval_pflops(trial)
    assert len(listings) == 1


def test_imagefolder_eval_cost_counts_its_val_images(tmp_path):
    """The test split of an imagefolder is its val/ folder: each of its images is one more forward pass."""
    def folder(root, val_images: int):
        for split, count in (("train", 40), ("val", val_images)):
            for i in range(count):
                path = root / split / ("cat" if i % 2 else "dog") / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
        return TrialConfig.from_dict({"dataset": f"imagefolder:{root}", "epochs": 1, "batch_size": 8, "image_size": 32,
                                      "eval": {"linear_probe": False}})

    few, many = predicted_eval_pflops(folder(tmp_path / "a", 4)), predicted_eval_pflops(folder(tmp_path / "b", 24))
    assert many > few > 0


def test_study_wall_time_is_the_longest_slot_not_the_mean():
    """Ray starts trials in order as slots free up: one long trial beside short ones sets the time."""
    assert makespan([300.0, 100.0], 2) == 300.0  # the quickstart's two arms side by side (mean x 2 / 2 said 200)
    assert makespan([10.0, 10.0, 10.0], 2) == 20.0
    assert makespan([5.0, 1.0, 1.0, 1.0, 1.0], 2) == 5.0
    assert makespan([4.0, 4.0], 1) == 8.0
