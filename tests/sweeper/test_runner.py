"""Runner pieces that need no Ray cluster."""

from __future__ import annotations

from pathlib import Path

import optuna

from sweeper.runner import _fail_abandoned_optuna_trials


def test_trials_a_killed_driver_left_running_in_optuna_are_marked_failed(tmp_path: Path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    study.tell(study.ask(), 1.0)
    study.ask()  # left RUNNING, as by a killed driver
    _fail_abandoned_optuna_trials(storage, "s")
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    _fail_abandoned_optuna_trials(storage, "not-created-yet")  # first run: nothing to do, no error
