"""What a `run` shows while it runs, and the trackers it feeds.

- `quiet_ray`: Ray's warnings that are not the user's concern (snapshot timing, the auth-token
  notice, OptunaSearch's space notice) are silenced unless `-v`.
- `StudyReporter`: with `-v`, Ray's CLI reporter with the knobs as named columns, trials named
  by the store's trial id, and the study line under each table (without `-v`: `study_view`).
- `logger_callbacks`: the study's `loggers:` through Ray Tune's own integrations.
- `Eta`: time left from the cost model, corrected by the rate the study has reached so far.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ray.tune import Callback, CLIReporter

from sweeper.study.model import Study

# Loggers whose warnings are Ray's housekeeping, not the user's problem (shown again with -v).
QUIET_LOGGERS = (
    "ray.tune.search.optuna.optuna_search",  # "space ... unresolved": we pass a resolved space
    "ray.tune.execution.experiment_state",  # snapshot timing notices
    "ray._private.authentication",  # auth-token notice of a loopback-only embedded Ray
    "ray.tune.tune",
    "ray.tune.utils.util",  # "... took N s, which may be a performance bottleneck": the driver's housekeeping
)
QUIET_ENV = {
    # Tune's warning about frequent experiment snapshots (num_to_keep is not set, so it has none to give)
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # The legacy reporter is the one that takes named parameter and metric columns.
    "RAY_AIR_NEW_OUTPUT": "0",
}
METRIC_COLUMNS = {"epoch": "epoch", "loss": "loss", "knn_val_top1": "val kNN", "train_pflops": "PFLOPs", "wall_s": "wall s"}
REPORT_EVERY_S = 15


QUIET_FLAG = "S3L_QUIET_RAY"  # read by the workers an embedded Ray starts (they inherit the driver's environment)
WORKER_QUIET_LOGGERS = ("ray.train", "ray.tune")  # "Checkpoint successfully created at ..." once per round


def quiet_ray(verbose: bool) -> None:
    """Silence Ray's housekeeping warnings (not errors) unless `verbose`; the reporter's table
    still shows every trial. Call before Ray starts, so its workers inherit the choice."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = QUIET_ENV["RAY_AIR_NEW_OUTPUT"]
    if verbose:
        os.environ.pop(QUIET_FLAG, None)
        return
    os.environ[QUIET_FLAG] = "1"
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_worker() -> None:
    """In a trial's worker: drop Ray's per-round INFO lines unless the driver ran with `-v`."""
    if os.environ.get(QUIET_FLAG) == "1":
        for name in WORKER_QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def parameter_columns(study: Study, grid: bool) -> dict[str, str]:
    """Ray config key -> column title, one per knob (and `seed` when there are several)."""
    knobs = list(study.space) + (["seed"] if len(study.seeds) > 1 else [])
    # grid/random trials carry their whole point under "point" (Ray flattens with "/")
    return {(f"point/{k}" if grid else k): k for k in knobs}


@dataclass
class Eta:
    """Time left. Before any progress: the trials left at the cost model's rate (FLOPs only).
    After: each running trial's own pace (the share of its rounds reported since it started)
    gives its time left, trials not yet started take the mean trial time seen so far, and they
    are laid out over the study's `slots`, so the longest trial running alone at the end counts
    (a study-wide rate of trials per second was 1.5x optimistic: issue 27)."""

    mean_trial_pflops: float
    predicted_tflops: float | None  # the study's rate with its trials at once (cost model); None when unknown
    started: float
    rounds_of: Callable[[dict[str, Any]], int] = lambda config: 1  # a Ray trial config -> its rounds
    slots: int = 1  # trials at once
    clock: Callable[[], float] = time.monotonic
    ended_here: int = 0
    running: dict[str, float] = field(default_factory=dict)  # Ray trial id -> share of rounds reported
    began: dict[str, float] = field(default_factory=dict)  # Ray trial id -> when it started (a slot freed)
    durations: list[float] = field(default_factory=list)  # trials ended in this run
    last_end: float | None = None

    def trial_started(self, trial_id: str) -> None:
        """Ray started the trial: its pace counts from now, not from the run's start (which holds
        Ray's own start-up: the quickstart's ETA said 2 min with 63 s left)."""
        self.began[trial_id] = self.clock()

    def progress(self, trial_id: str, config: dict[str, Any], rounds_done: int) -> None:
        # a trial starts when a slot frees: at the run's start, or when the last trial before it ended
        self.began.setdefault(trial_id, max(self.started, self.last_end or self.started))
        self.running[trial_id] = min(1.0, rounds_done / max(1, self.rounds_of(config)))

    def ended(self, trial_id: str) -> None:
        now = self.clock()
        self.running.pop(trial_id, None)
        if trial_id in self.began:
            self.durations.append(now - self.began.pop(trial_id))
        self.ended_here += 1
        self.last_end = now

    def seconds_left(self, trials_left: int) -> tuple[float | None, str]:
        """(seconds, where the estimate comes from)."""
        if trials_left <= 0:
            return 0.0, "done"
        now = self.clock()
        underway = {t: share for t, share in self.running.items() if share > 0 and t in self.began}
        projected = {t: (now - self.began[t]) / share for t, share in underway.items()}  # each one's whole duration
        known = self.durations or list(projected.values())
        if known:
            typical = sum(known) / len(known)
            free = sorted(max(0.0, projected[t] - (now - self.began[t])) for t in underway)
            free += [0.0] * max(0, self.slots - len(free))
            for _ in range(max(0, trials_left - len(underway))):  # each waiting trial takes the first free slot
                free.sort()
                free[0] += typical
            return max(free), "trials so far"
        if self.predicted_tflops:
            return trials_left * self.mean_trial_pflops * 1e15 / (self.predicted_tflops * 1e12), "cost model, start-up apart"
        return None, "unknown"


def eta_text(estimate: tuple[float | None, str]) -> str:
    seconds, source = estimate
    if seconds is None:
        return "ETA unknown until a trial reports progress"
    if source == "done":
        return "ETA 0 s"
    if seconds < 90:
        return f"ETA {seconds:.0f} s ({source})"
    if seconds < 5400:
        return f"ETA {seconds / 60:.0f} min ({source})"
    return f"ETA {seconds / 3600:.1f} h ({source})"


def make_eta(study: Study, pending: list[dict[str, Any]], rounds_of: Callable[[dict[str, Any]], int]) -> Eta:
    """The cost model's view of the trials still to run, as `estimate` predicts them (no
    measurement: the CPU rates already cached for their shapes, else no prediction)."""
    from sweeper.estimate.cost_model import GPU_RATES, concurrent_trials, makespan, predicted_cost, predicted_seconds
    from sweeper.estimate.device_rate import cpu_trial_seconds

    gpu = study.resources.gpu > 0
    at_once = concurrent_trials(study.max_concurrent, study.resources.cpu, study.resources.gpu, gpu, os.cpu_count() or 1)
    # A sampled study's trials are not known in advance: base trials, one per slot, stand for them.
    configs = [study.trial_config(p) for p in pending] or [study.trial_config()] * at_once
    pflops = [predicted_cost(c).total_pflops for c in configs]
    seconds: tuple[float, ...] | None
    if gpu:
        seconds = tuple(predicted_seconds(p, GPU_RATES[0]) for p in pflops)
    else:
        cpu = cpu_trial_seconds(configs, max(1, int(study.resources.cpu)), measure=False)
        seconds = cpu.seconds if cpu is not None else None
    tflops = None
    if seconds:
        wall = makespan(seconds, at_once)
        tflops = sum(pflops) * 1e3 / wall if wall > 0 else None  # the rate the pending trials' FLOPs get done at
    return Eta(sum(pflops) / len(pflops), tflops, time.monotonic(), rounds_of, slots=at_once)


class StudyReporter(CLIReporter):
    """Ray's table with named knob columns, then the study line from `study_line()`."""

    def __init__(self, study: Study, grid: bool, study_line: Callable[[], str], total: int):
        super().__init__(
            parameter_columns=parameter_columns(study, grid),
            metric_columns=METRIC_COLUMNS,
            total_samples=total,
            max_report_frequency=REPORT_EVERY_S,
            max_column_length=24,
        )
        self._study_line = study_line

    def report(self, trials: list[Any], done: bool, *sys_info: str) -> None:
        super().report(trials, done, *sys_info)
        self._print(self._study_line())


def logger_callbacks(study: Study, store_root: Path) -> list[Any]:
    """Ray Tune's own logger callbacks for the study's `loggers:`; CSV and JSON always (Ray's
    result analysis and `progress.csv` read them)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    # Only what the study names: Ray would otherwise add a TensorBoard logger of its own.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    callbacks: list[Any] = [CSVLoggerCallback(), JsonLoggerCallback()]
    for name in study.loggers:
        if name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            callbacks.append(TBXLoggerCallback())
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            # a local SQLite file in the store (MLflow 3 refuses its ./mlruns folder store by default)
            uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root / 'mlflow.db'}"
            callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=study.name, tags={"study": study.name}))
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            callbacks.append(WandbLoggerCallback(project=study.name, group=study.name))
    return callbacks


def tensorboard_hint(ray_dir: Path) -> str:
    return f"TensorBoard: tensorboard --logdir {ray_dir}   (the viewer: pip install -e '.[tensorboard]')"


def record_optuna_objectives(study: Study, storage_url: str) -> None:
    """Name the Optuna study's objectives (the validation metrics Ray optimises) and keep the
    study's own objectives as a user attribute, so optuna-dashboard shows both."""
    import warnings

    import optuna

    from sweeper.study.schema import selection_metric

    try:
        optuna_study = optuna.load_study(study_name=study.name, storage=storage_url)
    except KeyError:  # no trial was sampled
        return
    metrics = [selection_metric(m) for m in study.objectives]
    if len(optuna_study.directions) == len(metrics[: len(optuna_study.directions)]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # set_metric_names is "experimental" since Optuna 3.2
            optuna_study.set_metric_names(metrics[: len(optuna_study.directions)])
    optuna_study.set_user_attr("objectives", dict(study.objectives))


class OptunaTrialTags(Callback):
    """Tags each Optuna trial with the store's trial id while it runs (an ended Optuna trial
    cannot be changed), so optuna-dashboard rows match `runs/<name>/trials/<id>.json`."""

    def __init__(self, searcher: Any, trial_id_of: Callable[[dict[str, Any]], str]):
        self.searcher, self.trial_id_of = searcher, trial_id_of
        self.tagged: set[str] = set()

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001 (Ray's signature)
        if trial.trial_id in self.tagged:
            return
        optuna_trial = getattr(self.searcher, "_ot_trials", {}).get(trial.trial_id)  # OptunaSearch's own map (ray is pinned)
        if optuna_trial is not None:
            optuna_trial.set_user_attr("store_trial_id", self.trial_id_of(trial.config))
            self.tagged.add(trial.trial_id)
