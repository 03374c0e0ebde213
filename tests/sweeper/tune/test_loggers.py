"""The `loggers:` key: validated against what is installed, and fed through Ray Tune's own
integrations; MLflow for real into a local SQLite file in the store (issue 12)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from sweeper.study.load import load_study
from sweeper.study.model import StudyError
from tests.sweeper.conftest import write_study


def test_tensorboard_is_the_default_logger(tmp_path: Path):
    study = load_study(write_study(tmp_path))
    assert study.loggers == ("tensorboard",)
    assert study.to_dict()["loggers"] == ["tensorboard"]
    assert load_study(write_study(tmp_path, name="none", loggers=[])).loggers == ()


@pytest.mark.parametrize("loggers, message", [
    (["tensorbord"], "unknown logger 'tensorbord'; known: tensorboard, wandb, mlflow (did you mean 'tensorboard'?)"),
    (["tensorboard", "tensorboard"], "lists a logger twice"),
    ("mlflow", "expected a list of logger names"),
])
def test_bad_loggers_are_one_clear_problem(tmp_path: Path, loggers, message):
    with pytest.raises(StudyError) as refused:
        load_study(write_study(tmp_path, loggers=loggers))
    (problem,) = refused.value.problems
    assert problem.key_path == "loggers" and message in problem.message
    assert str(problem).startswith(f"{tmp_path / 'tiny.yaml'}:")


def test_a_logger_whose_package_is_missing_names_the_extra_to_install(tmp_path: Path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(StudyError) as refused:
        load_study(write_study(tmp_path, loggers=["tensorboard", "wandb"]))
    (problem,) = refused.value.problems
    assert problem.message == "logger 'wandb' needs the wandb package, which is not installed: pip install 's3l-sweep[wandb]'"


def test_logger_callbacks_are_ray_tunes_own(tmp_path: Path):
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    from sweeper.tune.live_view import logger_callbacks

    kinds = [type(c) for c in logger_callbacks(load_study(write_study(tmp_path)), tmp_path)]
    assert kinds == [CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback]
    assert [type(c) for c in logger_callbacks(load_study(write_study(tmp_path, name="none", loggers=[])), tmp_path)] == [CSVLoggerCallback, JsonLoggerCallback]


@pytest.mark.slow
def test_mlflow_logger_writes_every_trial_to_a_local_file_store(tmp_path: Path, local_ray, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="the MLflow path needs `pip install 's3l-sweep[mlflow]'`")
    from sweeper.tune.runner import run_study
    from sweeper.store.local import Store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study = load_study(write_study(tmp_path, name="tracked", grid=[8, 12], loggers=["mlflow"]))
    summary = run_study(study, report=False)
    assert summary.finished == 2
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{summary.store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    ids = {r["trial_id"] for r in Store(summary.store).records()}
    assert {run.data.tags["mlflow.runName"] for run in runs} == ids  # runs named by the store's trial id
    for run in runs:
        assert 0.0 < run.data.metrics["knn_val_top1"] <= 1.0
        assert run.data.params["point/resolution"] in ("8", "12")
        assert run.data.tags["study"] == "tracked"
