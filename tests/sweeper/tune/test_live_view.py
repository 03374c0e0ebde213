"""The live view of a run: knobs as named columns, trials named by the store's id, a study line
with an ETA, no Ray housekeeping warnings, the TensorBoard hint; Optuna user attributes; and
the ETA arithmetic (issue 12)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweeper.tune.live_view import Eta, eta_text, parameter_columns
from sweeper.study.load import load_study
from tests.sweeper.conftest import TINY_TRIAL, write_study


class Clock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_eta_uses_the_cost_model_until_progress_then_each_trials_pace():
    clock = Clock(100.0)
    eta = Eta(mean_trial_pflops=2.0, predicted_tflops=1000.0, started=0.0, rounds_of=lambda config: 4, slots=2, clock=clock)
    seconds, source = eta.seconds_left(3)
    assert source.startswith("cost model") and seconds == pytest.approx(3 * 2e15 / 1e15)
    eta.progress("a", {}, 2)  # half of trial a in 100 s: a needs 100 s more, and 2 waiting trials take 200 s each
    seconds, source = eta.seconds_left(3)
    assert source == "trials so far" and seconds == pytest.approx(300)  # slot 1: a then one; slot 2: the other
    assert eta_text(eta.seconds_left(0)) == "ETA 0 s"
    assert eta_text(Eta(1.0, None, 0.0, clock=clock).seconds_left(2)) == "ETA unknown until a trial reports progress"
    assert eta_text((7200.0, "trials so far")) == "ETA 2.0 h (trials so far)"


def test_the_eta_counts_the_longest_trial_running_alone_at_the_end():
    """The quickstart's case: an 8 px and a 14 px trial side by side. When the 8 px one ends at
    100 s the 14 px one is 40% done: 150 s are left, not the 43 s a study-wide rate says."""
    clock = Clock(0.0)
    eta = Eta(1.0, None, 0.0, rounds_of=lambda config: 10, slots=2, clock=clock)
    eta.progress("big", {}, 1), eta.progress("small", {}, 1)
    clock.now = 100.0
    eta.progress("big", {}, 4)
    eta.ended("small")
    assert eta.seconds_left(1) == (pytest.approx(150.0), "trials so far")
    eta.progress("next", {}, 0)  # a third trial starts in the freed slot, nothing reported yet
    assert eta.seconds_left(2)[0] == pytest.approx(150.0)  # 100 s (the small one's time) fits beside the big one's 150


def test_a_trials_pace_counts_from_when_ray_started_it_not_from_the_run_start():
    """The quickstart: Ray took 13 s to start; at the first trial's end the ETA said 2 min with 63 s left."""
    now = [0.0]
    eta = Eta(1.0, None, 0.0, rounds_of=lambda config: 16, slots=2, clock=lambda: now[0])
    now[0] = 13.0  # Ray up, both trials start
    eta.trial_started("a")
    eta.trial_started("b")
    now[0] = 101.0
    eta.progress("a", {}, 16)
    eta.ended("a")
    eta.progress("b", {}, 9)  # 88 s for 9 of 16 rounds: 68 s to go
    seconds, _ = eta.seconds_left(1)
    assert abs(seconds - 88 * 16 / 9 + 88) < 1e-6


def test_the_first_eta_is_what_estimate_predicts_from_the_cached_rates(tmp_path: Path, monkeypatch):
    """Before any progress the ETA is `estimate`'s study wall time for the pending trials; with
    no rate cached for their shapes it measures nothing and says it does not know."""
    from sweeper.estimate.cost_model import makespan
    from sweeper.estimate.device_rate import cpu_trial_seconds
    from sweeper.tune.live_view import make_eta
    from sweeper.study.plan import unique_points

    monkeypatch.setenv("S3L_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("sweeper.estimate.device_rate.load_average", lambda: 0.0)  # a rate measured on the loaded test machine still counts
    study = load_study(write_study(tmp_path, grid=[8, 16], trial={**TINY_TRIAL, "epochs": 40}))
    pending = unique_points(study)
    assert make_eta(study, pending, lambda config: 1).seconds_left(2) == (None, "unknown")
    seconds = cpu_trial_seconds([study.trial_config(p) for p in pending], 1).seconds  # measures both shapes, as `estimate` would
    predicted, source = make_eta(study, pending, lambda config: 1).seconds_left(2)
    assert source.startswith("cost model") and predicted == pytest.approx(makespan(seconds, 2))
    # a sampled study (no pending points known): base trials (8 px here), two at a time
    (base,) = cpu_trial_seconds([study.trial_config()], 1, measure=False).seconds
    assert make_eta(study, [], lambda config: 1).seconds_left(6)[0] == pytest.approx(6 * base / 2)


def test_parameter_columns_name_every_knob(tmp_path: Path):
    study = load_study(write_study(tmp_path, seeds=[0, 1], space={"resolution": {"grid": [8, 12]}, "backbone.width": {"grid": [0.125, 0.25]}}))
    assert parameter_columns(study, grid=True) == {"point/resolution": "resolution", "point/backbone.width": "backbone.width", "point/seed": "seed"}
    assert parameter_columns(study, grid=False) == {"resolution": "resolution", "backbone.width": "backbone.width", "seed": "seed"}


@pytest.mark.slow
def test_a_run_shows_knob_columns_store_ids_and_a_study_line(tmp_path: Path):
    """As a user sees it: `python -m sweeper run` in a process of its own (a run inside this test
    process would inherit what earlier tests left in Ray Tune's module state)."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from sweeper.store.local import Store, store_root

    path = write_study(tmp_path, grid=[8, 12])
    done = subprocess.run([sys.executable, "-m", "sweeper", "run", str(path), "--no-report"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout + done.stderr
    summary = SimpleNamespace(store=store_root(load_study(path)))
    ids = sorted(r["trial_id"] for r in Store(summary.store).records())
    assert len(ids) == 2
    for tid in ids:  # one line as each trial starts and one as it ends, named by its store id and its knobs
        assert len(re.findall(rf"^started  {tid}  resolution (8|12)$", text, re.M)) == 1, text
        assert len(re.findall(rf"^finished {tid}  resolution (8|12): val kNN [0-9.]+%, [0-9]+ s  \[study: [12]/2 trials done", text, re.M)) == 1, text
    # no GPU-hours on a CPU study; PFLOPs of running trials count
    assert re.search(r"\[study: 2/2 trials done, 0 failed, [0-9.e-]+ PFLOPs spent, ETA 0 s\]$", text, re.M), text
    assert "nan" not in text and "| Trial name" not in text and len(text.splitlines()) < 20, text
    assert f"TensorBoard: tensorboard --logdir {summary.store / 'ray'}" in text
    assert list((summary.store / "ray").glob("*/*/events.out.tfevents.*"))
    assert "snapshotting" not in text and "unresolved" not in text.lower()
    import pandas as pd

    progress = pd.concat(pd.read_csv(p) for p in (summary.store / "ray").glob("*/*/progress.csv"))
    assert sorted(set(progress["store_trial_id"])) == ids  # Ray's own trial_id no longer hides it


@pytest.mark.slow
def test_optuna_trials_carry_the_objective_names_and_the_store_trial_id(tmp_path: Path, local_ray):
    import optuna

    from sweeper.tune.runner import run_study
    from sweeper.store.local import Store

    path = write_study(tmp_path, name="opt", space={"resolution": {"choice": [8, 12]}}, search={"algorithm": "optuna-tpe", "num_samples": 2, "seed": 1},
                       objectives={"knn_top1": "max"})
    summary = run_study(load_study(path), report=False)
    assert summary.finished >= 1
    optuna_study = optuna.load_study(study_name="opt", storage=f"sqlite:///{summary.store / 'optuna.db'}")
    assert optuna_study.metric_names == ["knn_val_top1"]
    assert optuna_study.user_attrs["objectives"] == {"knn_top1": "max"}
    finished = {r["trial_id"] for r in Store(summary.store).records() if r["status"] == "finished"}
    tagged = {t.user_attrs.get("store_trial_id") for t in optuna_study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert tagged and tagged <= finished


def test_quiet_by_default_and_verbose_gives_rays_output_back(monkeypatch):
    import logging

    from sweeper.cli import build_parser
    from sweeper.tune.live_view import QUIET_ENV, QUIET_FLAG, QUIET_LOGGERS, quiet_ray, quiet_worker

    for key in (*QUIET_ENV, QUIET_FLAG):
        monkeypatch.delenv(key, raising=False)
    for name in QUIET_LOGGERS + ("ray.train",):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    assert build_parser().parse_args(["run", "x.yaml"]).verbose is False
    assert build_parser().parse_args(["run", "x.yaml", "-v"]).verbose is True

    quiet_ray(verbose=True)
    assert QUIET_FLAG not in __import__("os").environ
    assert all(logging.getLogger(n).level == logging.NOTSET for n in QUIET_LOGGERS)
    quiet_worker()
    assert logging.getLogger("ray.train").level == logging.NOTSET

    quiet_ray(verbose=False)
    import os

    assert os.environ["TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"] == "0"  # no snapshot-timing warning
    assert all(logging.getLogger(n).level == logging.ERROR for n in QUIET_LOGGERS)
    quiet_worker()
    assert logging.getLogger("ray.train").level == logging.WARNING
