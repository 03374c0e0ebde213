"""What a trial tells Ray (validation numbers and costs, never a test-split number), and what it reuses or resumes."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from sweeper.study.schema import OBJECTIVE_METRICS, SELECTION_METRICS, selection_metric
from sweeper.tune.trainable import _objective_values
from tests.sweeper.conftest import write_study

FINISHED = {
    "knn_top1": 0.81, "knn_val_top1": 0.79, "knn_top1_best": 0.8, "linear_top1": 0.85, "linear_val_top1": 0.84,
    "finetune_top1": 0.9, "finetune_val_top1": 0.88, "train_pflops": 1.0, "eval_pflops": 0.5, "total_pflops": 1.5, "wall_s": 3600.0,
}  # fmt: skip


def test_ray_gets_the_validation_twin_of_every_accuracy_and_no_test_number():
    values = _objective_values(FINISHED, gpu_fraction=0.5)
    assert not {"knn_top1", "linear_top1", "finetune_top1"} & set(values)
    assert values["knn_val_top1"] == 0.79 and values["linear_val_top1"] == 0.84 and values["finetune_val_top1"] == 0.88
    assert values["gpu_hours"] == 0.5


def test_every_objective_a_study_may_name_is_reported_to_ray_under_its_selection_name():
    reported = set(_objective_values(FINISHED, gpu_fraction=0.0))
    for objective in OBJECTIVE_METRICS:
        assert selection_metric(objective) in reported, objective
    assert all(selection_metric(test) == val for test, val in SELECTION_METRICS.items())


def test_missing_metrics_are_nan_so_searchers_always_find_them():
    values = _objective_values({}, gpu_fraction=0.0)
    assert all(math.isnan(v) for k, v in values.items() if k != "gpu_hours")


# ----------------------------------------------------- reuse and resume, without Ray
# run_trial against a real store, with Ray's report/checkpoint calls and the trainer faked, so
# `-m "not slow"` catches a broken reuse or resume.


@dataclasses.dataclass
class FakeEpoch:
    epoch: int
    loss: float


class FakeResult:
    epochs = [FakeEpoch(epoch=2, loss=1.0)]

    def metrics(self) -> dict:
        return {"knn_val_top1": 0.5, "knn_top1": 0.5, "train_pflops": 1.0, "total_pflops": 1.0, "wall_s": 1.0}


@pytest.fixture
def fake_trial(tmp_path: Path, monkeypatch):
    """(context, point, trial id, store, calls): `calls["train"]` lists each training's resume
    state, `calls["reports"]` what reached Ray."""
    import sweeper.tune.trainable as trainable
    from sweeper.tune.runner import _context
    from sweeper.store.local import Store, store_root
    from sweeper.study.load import load_study

    study = load_study(write_study(tmp_path, grid=[8]))
    root = store_root(study)
    root.mkdir(parents=True)
    context = _context(study, root)
    point = {"resolution": 8, "seed": 0}
    calls: dict[str, list] = {"train": [], "reports": []}

    def fake_train(config, on_epoch, resume_from, checkpoint_dir):
        calls["train"].append(resume_from)
        return FakeResult()

    monkeypatch.setattr(trainable, "train", fake_train)
    monkeypatch.setattr(trainable, "_this_node", lambda: "test-node")
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(trainable.tune, "report", lambda metrics, checkpoint=None: calls["reports"].append(metrics))
    return context, point, trainable.trial_id_for(context, point), Store(root), calls


def test_a_finished_record_is_reused_and_nothing_trains(fake_trial):
    from sweeper.tune.trainable import new_record, run_trial, trial_config_for

    context, point, tid, store, calls = fake_trial
    store.write_record({**new_record(point, trial_config_for(context, point), context, "finished"), "metrics": FakeResult().metrics()})
    run_trial({"point": point}, context)
    assert calls["train"] == [] and calls["reports"][-1]["reused"] is True


@pytest.mark.parametrize("status", ["failed", "stopped", "skipped_budget"])
def test_failed_stopped_and_budget_skipped_trials_run_again(fake_trial, status: str):
    from sweeper.tune.trainable import new_record, run_trial, trial_config_for

    context, point, tid, store, calls = fake_trial
    store.write_record(new_record(point, trial_config_for(context, point), context, status, "earlier run"))
    run_trial({"point": point}, context)
    assert calls["train"] == [None]
    assert store.read_record(tid)["status"] == "finished" and "reused" not in calls["reports"][-1]


def test_a_checkpoint_of_an_earlier_run_is_resumed(fake_trial):
    """Ray numbers checkpoints afresh per attempt; a new driver finds the old attempt's in the store."""
    import torch

    from s3l_core.checkpoint import CHECKPOINT_NAME, save_checkpoint
    from sweeper.tune.trainable import run_trial

    context, point, tid, store, calls = fake_trial
    save_checkpoint({"epoch": 1, "model": {"w": torch.ones(3)}}, store.ray_dir / "attempt-1" / tid / "checkpoint_000000" / CHECKPOINT_NAME)
    run_trial({"point": point}, context)
    (resumed,) = calls["train"]
    assert resumed is not None and resumed["epoch"] == 1
    assert store.read_record(tid)["resumed_from_corrupt"] is False


def test_a_corrupt_checkpoint_starts_from_scratch_and_the_record_says_so(fake_trial, caplog):
    from s3l_core.checkpoint import CHECKPOINT_NAME
    from sweeper.tune.trainable import run_trial

    context, point, tid, store, calls = fake_trial
    damaged = store.ray_dir / "attempt-1" / tid / "checkpoint_000000" / CHECKPOINT_NAME
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"")  # a zero-byte copy
    run_trial({"point": point}, context)
    assert calls["train"] == [None]
    assert store.read_record(tid)["resumed_from_corrupt"] is True
    assert any("starting from scratch" in r.getMessage() and tid in r.getMessage() for r in caplog.records)


def test_the_newest_checkpoint_of_all_earlier_runs_is_the_one_resumed(fake_trial):
    """Attempt names do not order checkpoints (Ray restarts its numbering): time written does."""
    import os

    import torch

    from s3l_core.checkpoint import CHECKPOINT_NAME, save_checkpoint
    from sweeper.tune.trainable import run_trial

    context, point, tid, store, calls = fake_trial
    for attempt, epoch, written in [("attempt-b", 1, 1_000), ("attempt-a", 3, 2_000), ("attempt-c", 2, 1_500)]:
        directory = store.ray_dir / attempt / tid / "checkpoint_000000"
        save_checkpoint({"epoch": epoch, "model": {"w": torch.ones(3)}}, directory / CHECKPOINT_NAME)
        os.utime(directory, (written, written))
    run_trial({"point": point}, context)
    assert [state["epoch"] for state in calls["train"]] == [3]


@pytest.mark.parametrize("registry", ["METHODS", "PRESETS", "RECIPES"])
def test_a_method_missing_from_a_registry_is_a_config_error_that_is_not_retried(tmp_path: Path, monkeypatch, registry: str):
    """A method one list lacks was a ValueError or KeyError: Ray retried it as a crash, and
    `validate` printed a KeyError traceback for one without a recipe."""
    from s3l_core import methods, recipes, views
    from s3l_core.config import AugmentConfig, MethodConfig, TrialConfig
    from sweeper.study.load import load_study
    from sweeper.study.model import StudyError
    from sweeper.tune.trainable import PERMANENT_ERRORS

    table = {"METHODS": methods.METHODS, "PRESETS": views.PRESETS, "RECIPES": recipes.RECIPES}[registry]
    monkeypatch.delitem(table, "byol")
    with pytest.raises(PERMANENT_ERRORS, match="byol"):
        if registry == "METHODS":
            methods.build_method("byol", None, MethodConfig(), 10)
        elif registry == "PRESETS":
            views.preset_for("byol", AugmentConfig(), 28)
        else:
            TrialConfig.from_dict({"method": "byol"})
    if registry == "RECIPES":
        with pytest.raises(StudyError, match="byol"):
            load_study(write_study(tmp_path, trial={"method": "byol"}))


def test_a_finished_trial_keeps_what_the_study_says(tmp_path: Path):
    """keep: checkpoint -> the whole last checkpoint; encoder -> only the encoder's weights, which
    load into a fresh encoder of the trial's architecture; none -> an empty folder (it replaces the
    last full checkpoint Ray holds)."""
    import torch

    from s3l_core.backbone import build_resnet
    from s3l_core.checkpoint import CHECKPOINT_NAME
    from s3l_core.config import TrialConfig
    from s3l_core.trainer import train
    from sweeper.tune.trainable import ENCODER_WEIGHTS, kept_folder
    from tests.sweeper.conftest import TINY_TRIAL

    config = TrialConfig.from_dict({**TINY_TRIAL, "epochs": 1, "dataset": "fashion-mnist-sample", "device": "cpu"})
    for keep in ("checkpoint", "encoder", "none"):
        scratch = tmp_path / keep
        scratch.mkdir()
        train(config, checkpoint_dir=scratch)
        kept = kept_folder(scratch, keep)
        names = sorted(p.name for p in kept.iterdir())
        if keep == "checkpoint":
            assert kept == scratch and CHECKPOINT_NAME in names
        elif keep == "encoder":
            assert names == [ENCODER_WEIGHTS]
            weights = torch.load(kept / ENCODER_WEIGHTS, weights_only=True)
            build_resnet(10, 0.125, 4, 1, "cifar").load_state_dict(weights)  # strict: every encoder weight, nothing else
            assert (kept / ENCODER_WEIGHTS).stat().st_size < (scratch / CHECKPOINT_NAME).stat().st_size / 2
        else:
            assert names == []
    assert kept_folder(tmp_path / "empty-run", "encoder") is None  # no checkpoint written: Ray's last one stands
