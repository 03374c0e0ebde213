"""Run a validated study as Ray Tune trials: the one module that builds a `Tuner`.

Incremental by construction: every sweep point becomes a trial id (a hash of its resolved
config); points whose id has a finished record in the store are never launched again.

On an object store a driver can lose its lease (paused past it while another driver took the
study over, `sweeper/store/lease.py`). `LeaseStopper` then ends the Tune run, and `run_study` raises one
line naming the new holder, writing nothing more: no state, tables or report.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Union

import pandas as pd
import ray
from ray import tune

from sweeper.store.claim import WrittenReport, claimed_store, report_location, store_fault, write_study_report
from sweeper.tune.cluster import ClusterError, _first_line, available_resources, check_capacity, cluster_address, connect  # noqa: F401 (the CLI imports them from here)
from sweeper.estimate.cost_model import run_plan
from sweeper.store.lease import Fence, Lease, LeaseLost
from sweeper.tune.live_view import Eta, OptunaTrialTags, StudyReporter, eta_text, logger_callbacks, make_eta, quiet_ray, record_optuna_objectives, tensorboard_hint
from sweeper.tune.provenance import provenance
from sweeper.store.run_summary import RunSummary
from sweeper.store.results import write_tables
from sweeper.tune.search_space import to_ray_space
from sweeper.study.plan import is_sampled, pending_trials, unique_trials
from sweeper.tune.point_queue import PointQueue, store_trial_name
from sweeper.store.object_store import DRIVER_FILES, ObjectStore, join_uri, open_store
from sweeper.store.local import Location, Store, StoreError, store_root
from sweeper.study.model import Study
from sweeper.tune.study_view import StudyView, point_words
from sweeper.study.schema import selection_metric
from sweeper.tune.trainable import (
    BUDGET_LEDGER,
    EPOCH_RECORD_KEY,
    FAILED_AT_ONCE_KEY,
    LEASE_LOST_KEY,
    TrialContext,
    budget_spent,
    point_of,
    run_trial,
    trial_config_for,
    trial_id_for,
    unfinished_record,
)

log = logging.getLogger("sweeper")


AnyStore = Union[Store, ObjectStore]


def _context(study: Study, root: Location, lease: Fence | None = None) -> TrialContext:
    budget_metric, budget_limit = None, None
    if study.budget.gpu_hours is not None:
        budget_metric, budget_limit = "gpu_hours", study.budget.gpu_hours
    elif study.budget.pflops is not None:
        budget_metric, budget_limit = "pflops", study.budget.pflops
    return TrialContext(str(root), study, study.resources.cpu, study.resources.gpu, budget_metric, budget_limit, lease)


class LeaseStopper(tune.Stopper):
    """Ends the whole run once the driver's lease is lost: its renewal was refused, or one of its
    writes found another driver's token (checked at each step of Tune's loop, so within a renewal)."""

    def __init__(self, lease: Lease):
        self.lease: Lease | None = lease

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        return self.lease is not None and self.lease.lost is not None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the run config into tuner.pkl (for Tuner.restore, which `run` never uses):
        # a lease's thread and client do not pickle, and a copy has no lease to lose.
        return {"lease": None}


def _unless_lost(write: Callable[[], None]) -> None:
    """A bookkeeping write of the driver, skipped once another driver holds the lease (its store
    refused it, and told the lease): the stopper is ending the run, and nothing more is written."""
    try:
        write()
    except LeaseLost:
        pass


class StudyProgress(tune.Callback):
    """Driver-side bookkeeping: records trials that end without a finished record, keeps the
    budget ledger (`budget.json`, read by each trial before it starts) and writes the study line
    that the live view prints (`StudyView`; `StudyReporter` with `-v`)."""

    def __init__(self, store: AnyStore, context: TrialContext, total: int, reused: int, eta: Eta | None = None, announce: bool = True):
        self.store, self.context = store, context
        self.total, self.done, self.failed = total, reused, 0
        self.eta = eta
        self.announce = announce  # print failures here (Ray's own table gives no reason); the live view prints its own
        self.spent = budget_spent(store)
        self.running_pflops: dict[str, float] = {}  # Ray trial id -> PFLOPs its last report says it spent
        self.curves: dict[str, list[dict[str, Any]]] = {}
        self._write_ledger()

    def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001 (Ray's signature)
        if self.eta is not None:
            self.eta.trial_started(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001 (Ray's signature)
        if EPOCH_RECORD_KEY in result:  # held only while the trial runs, so memory follows running trials
            self.curves.setdefault(trial.trial_id, []).append(json.loads(result[EPOCH_RECORD_KEY]))
        pflops = result.get("train_pflops")
        if isinstance(pflops, (int, float)) and pflops == pflops:
            self.running_pflops[trial.trial_id] = float(pflops)
        if self.eta is not None and result.get("epoch"):
            self.eta.progress(trial.trial_id, trial.config, int(result["epoch"]))

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
        if (trial.last_result or {}).get(LEASE_LOST_KEY):  # stopped unrecorded: another driver runs the study now
            self.curves.pop(trial.trial_id, None)
            return
        self.done += 1
        if self.eta is not None:
            self.eta.ended(trial.trial_id)
        self._charge(trial)
        error = (trial.last_result or {}).get(FAILED_AT_ONCE_KEY)
        if error:  # a config or data error: its record is written, retrying cannot help
            self.failed += 1
            if self.announce:  # the live view says it otherwise
                print(f"trial {trial.trial_id} failed (not retried): {error}", flush=True)
        curve = self.curves.pop(trial.trial_id, [])
        point = point_of(self.context, trial.config)
        if self.store.read_record(trial_id_for(self.context, point)) is None:
            # stopped early by the scheduler (ASHA): no finished record was written; keep its curve
            record = unfinished_record(self.context, point, "stopped", "stopped early by the scheduler")
            record.update(epochs=curve, metrics=_metrics_of_curve(curve))
            _unless_lost(lambda: self.store.write_record(record))

    def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: ANN001
        # A trial failing on a full or unwritable store would fail again on every retry: stop the run now.
        _unless_lost(lambda: self.store.check_writable("the study store"))

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
        self.failed += 1
        if self.eta is not None:
            self.eta.ended(trial.trial_id)
        self.curves.pop(trial.trial_id, None)
        self._charge(trial)
        error = _last_error_line(trial)
        record = unfinished_record(self.context, point_of(self.context, trial.config), "failed", error)
        _unless_lost(lambda: self.store.write_record(record))
        if self.announce:
            print(f"trial {trial.trial_id} failed after its retries: {error}", flush=True)

    def _charge(self, trial: Any) -> None:
        """Add what a trial spent (its last report: cumulative PFLOPs and seconds) to the ledger."""
        self.running_pflops.pop(trial.trial_id, None)
        last = trial.last_result or {}
        if last.get("reused") or last.get("skipped_budget"):
            return
        pflops = last.get("total_pflops", last.get("train_pflops"))
        self.spent["pflops"] += float(pflops) if pflops == pflops and pflops is not None else 0.0
        wall = last.get("wall_s")
        self.spent["gpu_hours"] += float(wall) / 3600.0 * self.context.gpu_fraction if wall == wall and wall is not None else 0.0
        _unless_lost(self._write_ledger)

    def _write_ledger(self) -> None:
        self.store.put_json(BUDGET_LEDGER, self.spent)

    def line(self) -> str:
        budget = ""
        if self.context.budget_metric:
            budget = f", {self.spent[self.context.budget_metric]:.4g} of {self.context.budget_limit:g} {self.context.budget_metric} budget spent"
        else:
            gpu = f"{self.spent['gpu_hours']:.3g} GPU-hours, " if self.context.gpu_fraction > 0 else ""  # none on a CPU study
            spent = self.spent["pflops"] + sum(self.running_pflops.values())
            budget = f", {gpu}{spent:.3g} PFLOPs spent"
        eta = ""
        if self.eta is not None:
            left = self.total - self.done - self.failed
            eta = ", " + eta_text(self.eta.seconds_left(left))
        return f"study: {self.done}/{self.total} trials done, {self.failed} failed{budget}{eta}"


def _metrics_of_curve(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """What a stopped trial reached: its last evaluated and best validation kNN, and its cost
    so far (no test numbers: the test split is evaluated only at the end of a run)."""
    if not curve:
        return {}
    evaluated = [e["knn_val_top1"] for e in curve if e.get("knn_val_top1") is not None]
    return {
        "knn_val_top1": evaluated[-1] if evaluated else None,
        "knn_top1_best": max(evaluated) if evaluated else None,
        "train_pflops": curve[-1]["train_pflops_cum"],
        "wall_s": curve[-1]["wall_s_cum"],
    }


def _trial_error(trial: Any) -> str | None:
    """Why a trial failed, for the live view: after its retries, or at once (a config or data error)."""
    if str(trial.status) == "ERROR":
        return _last_error_line(trial)
    return (trial.last_result or {}).get(FAILED_AT_ONCE_KEY)


def _last_error_line(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()] if path else []
    except OSError:
        lines = []
    return lines[-1][:500] if lines else "unknown error"


def _searcher_and_samples(study: Study, root: Path, pending: list[tuple[str, dict[str, Any]]], done: int) -> tuple[Any, dict[str, Any], int]:
    """(search_alg or None, param_space, num_samples) for this run."""
    algorithm = study.search.algorithm
    if algorithm in ("grid", "random"):
        return PointQueue(pending), {}, len(pending)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    modes = list(study.objectives.values())
    metrics = [selection_metric(m) for m in study.objectives]  # validation numbers, never test
    if algorithm == "optuna-tpe":
        metrics, modes = metrics[:1], modes[:1]
        sampler = optuna.samplers.TPESampler(seed=study.search.seed)
    else:
        from sweeper.tune.optuna_samplers import NSGAIISampler  # one Ray Tune can pickle

        sampler = NSGAIISampler(seed=study.search.seed)
    storage = optuna.storages.RDBStorage(_optuna_url(root))
    _fail_abandoned_optuna_trials(storage, study.name)
    space = to_ray_space(study)
    if len(study.seeds) > 1:  # each sampled configuration draws one of the study's seeds
        space["seed"] = tune.choice(list(study.seeds))
    searcher = OptunaSearch(
        space=space,
        metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0],
        sampler=sampler,
        study_name=study.name,
        storage=storage,
    )
    remaining = max(0, study.search.num_samples - done)
    return searcher, {}, remaining


def _optuna_url(root: Path) -> str:
    return f"sqlite:///{root / 'optuna.db'}"


def _fail_abandoned_optuna_trials(storage: Any, name: str) -> None:
    """Trials left RUNNING by a killed driver would show as running forever in optuna-dashboard."""
    import optuna

    try:
        existing = optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # first run: no Optuna study yet
        return
    for trial in existing.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def run_study(study: Study, address: str | None = None, storage: str | None = None, report: bool = True, verbose: bool = False) -> RunSummary:
    """Run what the study lacks; `verbose` shows Ray's full output (warnings, every result)."""
    quiet_ray(verbose)
    root = store_root(study, storage)
    store = open_store(root)
    report_dir = report_location(study) if report else None
    with claimed_store(store, report_dir, study.name) as lease, _stopped_if_lost(store, lease), driver_files(store) as driver_dir:
        # (a locked or unwritable store is refused before Ray starts)
        context = _context(study, root, lease.fence if lease is not None else None)
        finished = store.finished_ids()

        sampled = is_sampled(study)
        if not sampled:
            trials = unique_trials(study)
            pending = pending_trials(trials, finished)
            total = len(trials)
            reused = total - len(pending)
        else:
            total, reused, pending = study.search.num_samples, min(len(finished), study.search.num_samples), []
        searcher, param_space, num_samples = _searcher_and_samples(study, driver_dir, pending, reused)
        launched = num_samples
        idle = "; nothing to launch, so Ray is not started" if not launched else ""
        print(f"study {study.name}: {total} trials, {reused} already finished (reused), {launched} to run; store {store.location}{idle}", flush=True)
        if launched:  # the cluster, and the environment the new trials run in (kept from the last run otherwise)
            connect(cluster_address(study, address))
            check_capacity(study)
            store.put_json("provenance.json", provenance(ray.cluster_resources(), study.overrides))
        store.put("study.yaml", study.resolved_yaml())
        if launched and "tensorboard" in study.loggers:
            print(tensorboard_hint(store.join("ray")), flush=True)

        store.put_json("state.json", {"state": "running", "since": _now()})
        state = "crashed"
        try:
            if launched:
                eta = make_eta(study, [p for _, p in pending], lambda config: run_plan(trial_config_for(context, point_of(context, config))).rounds)
                try:
                    tuner = _tuner(study, store, context, searcher, param_space, num_samples, total, reused, eta, verbose, driver_dir, lease=lease)
                    with _sigterm_as_sigint():
                        tuner.fit()
                finally:
                    if sampled:  # optuna-dashboard shows the objectives by name
                        record_optuna_objectives(study, _optuna_url(driver_dir))
            if lease is not None and lease.lost is not None:  # the stopper ended the run
                raise LeaseLost(store.location, None)
            store.check_writable("the study store")  # trials that met a full disk failed: say why
            unended = _unended_trials(store, [tid for tid, _ in pending], total)
            state = "interrupted" if launched and unended else "finished"
            results, written = _finish(store, state, report_dir)
            if state == "interrupted":  # Tune stops its trials on Ctrl-C (checkpoints kept) and returns as if done
                raise StudyInterrupted(_interrupted_line(study, store, total, unended))
        except KeyboardInterrupt:
            state = "interrupted"
            _finish_quietly(store, state, report_dir)
            raise StudyInterrupted(_interrupted_line(study, store, total, None)) from None
        except StudyInterrupted:
            raise  # its tables, state and report are written
        except Exception as exc:  # noqa: BLE001 (a full store shows up as any of Ray's, Tune's or our errors)
            if lease is not None and lease.lost is not None:
                raise  # another driver holds the study: write nothing more (`_stopped_if_lost` says so)
            fault = store_fault(exc, store, report_dir)
            if fault is None:
                _finish_quietly(store, state, report_dir)
                raise
            _write_state(store, f"failed: {fault}")
            kept = len(store.finished_ids())
            raise StoreError(f"{fault}; the {kept} finished trials are kept in {store.location}: free space (or fix permissions) and `run` again to finish the study") from None
        counts = results["status"].value_counts() if len(results) else {}
        index = None if report_dir is None else report_dir / "index.html" if isinstance(report_dir, Path) else join_uri(report_dir, "index.html")
        nodes = results.loc[results["status"] == "finished", "node"].str.split(":").str[0].nunique() if "node" in results else 0
        return RunSummary(root, total, reused, launched, int(counts.get("finished", 0)), int(counts.get("failed", 0)), index, int(nodes),
                          written.answer if written else None)


class StudyInterrupted(RuntimeError):
    """The run was stopped (Ctrl-C, SIGTERM) before every trial ended: one line saying how to resume."""


def _unended_trials(store: AnyStore, pending_ids: list[str], total: int) -> int:
    """How many trials this run should have ended but did not: pending ids without a record
    (grid, random), or the samples short of `total` (Optuna)."""
    recorded = {r["trial_id"] for r in store.records()}
    # A sampled (Optuna) run's trials are not known in advance: only a KeyboardInterrupt marks it interrupted.
    return sum(tid not in recorded for tid in pending_ids)


def _interrupted_line(study: Study, store: AnyStore, total: int, unended: int | None) -> str:
    finished = len(store.finished_ids())
    left = f"{unended} unfinished" if unended is not None else f"{max(0, total - finished)} not finished"
    return (f"study {study.name} was interrupted: {finished} of {total} trials finished, {left}; "
            "their checkpoints are kept: `run` the study again to resume")


@contextlib.contextmanager
def _sigterm_as_sigint() -> Iterator[None]:
    """SIGTERM (a scheduler's stop, `kill`) stops the run as Ctrl-C does: Tune ends its trials with
    their checkpoints and the store says `interrupted`, instead of the driver dying mid-write."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _stopped_if_lost(store: AnyStore, lease: Lease | None) -> Iterator[None]:
    """Whatever ended a run whose lease was lost (the stopper, or a refused write), say that in one line."""
    try:
        yield
    except Exception:
        if lease is None or lease.lost is None:
            raise
        raise StoreError(f"{lease.lost}; this driver stopped: its trials were stopped, and nothing it or they wrote after the loss "
                         "was kept (no record, state, table or report); the other driver goes on with the study") from None


@contextlib.contextmanager
def driver_files(store: AnyStore) -> Iterator[Path]:
    """Where the driver keeps the SQLite files only it opens (Optuna's, MLflow's): the store's own
    folder, or for an object store a local folder copied from the store and back into it at the end."""
    if not store.remote:
        yield store.root
        return
    with tempfile.TemporaryDirectory(prefix="s3l-driver-") as local:
        store.pull(DRIVER_FILES, Path(local))
        try:
            yield Path(local)
        finally:
            try:
                store.push(DRIVER_FILES, Path(local))
            except LeaseLost:
                pass  # another driver holds the study: its copies stand
            except StoreError as exc:
                log.warning("could not copy %s back to %s: %s", ", ".join(DRIVER_FILES), store.location, exc)


def _scheduler(study: Study) -> Any:
    """ASHA on the first objective's validation number (never test), or None."""
    if study.scheduler.type != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    objective = next(iter(study.objectives))
    return ASHAScheduler(
        time_attr="epoch", metric=selection_metric(objective), mode=study.objectives[objective],
        max_t=10**6, grace_period=study.scheduler.grace_period, reduction_factor=study.scheduler.reduction_factor,
    )  # fmt: skip


def _tuner(
    study: Study, store: AnyStore, context: TrialContext, searcher: Any, param_space: dict[str, Any], num_samples: int, total: int, reused: int,
    eta: Eta | None = None, verbose: bool = False, driver_dir: Path | None = None, lease: Lease | None = None,
) -> tune.Tuner:
    scheduler = _scheduler(study)
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context), {"cpu": study.resources.cpu, "gpu": study.resources.gpu})
    progress = StudyProgress(store, context, total, reused, eta, announce=verbose)
    storage_path, storage_filesystem = store.ray_storage()
    sampled = not isinstance(searcher, PointQueue)
    # the store's id names the trial: carried in a queued point's config; computed for Optuna's
    store_name = (lambda trial: trial_id_for(context, point_of(context, trial.config))) if sampled else store_trial_name  # noqa: E731
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=num_samples,
            max_concurrent_trials=study.max_concurrent,
            # a fresh worker per trial costs seconds of imports and first-call set-up (bench/overhead.py)
            reuse_actors=True,
            trial_dirname_creator=store_name,
            trial_name_creator=store_name,
        ),
        run_config=tune.RunConfig(
            name=f"attempt-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}",
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=tune.FailureConfig(max_failures=study.failure.max_retries),
            # no num_to_keep: Ray would snapshot the whole experiment at every trial checkpoint; each
            # trial deletes its own superseded checkpoint (`report_replacing_checkpoint`)
            checkpoint_config=tune.CheckpointConfig(),
            stop=LeaseStopper(lease) if lease is not None else None,
            callbacks=[progress, *logger_callbacks(study, driver_dir or store.root)]
            + ([OptunaTrialTags(searcher, lambda config: trial_id_for(context, point_of(context, config)))] if sampled else []),
            progress_reporter=(StudyReporter(study, not sampled, progress.line, total - reused) if verbose else
                               StudyView(store_name, lambda trial: point_words(study, point_of(context, trial.config)),
                                         lambda trial: run_plan(trial_config_for(context, point_of(context, trial.config))).rounds,
                                         progress.line, _trial_error)),
            verbose=3 if verbose else 1,
        ),
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _finish(store: AnyStore, state: str, report_dir: Location | None) -> tuple[pd.DataFrame, WrittenReport | None]:
    """Leave consistent tables, a state marker and (if asked) a report."""
    results = write_tables(store)
    _write_state(store, state)
    return results, write_study_report(store, report_dir) if report_dir is not None else None


def _finish_quietly(store: AnyStore, state: str, report_dir: Location | None) -> None:
    """`_finish` on the way out of an error: the first error is the one to report."""
    try:
        _finish(store, state, report_dir)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write the tables, state or report of %s: %s", store.location, _first_line(exc))
        _write_state(store, state)


def _write_state(store: AnyStore, state: str) -> None:
    """state.json, whole; on a full local disk, in place (truncating first frees the space it needs)."""
    value = {"state": state, "at": _now()}
    try:
        store.put_json("state.json", value)
    except (OSError, StoreError) as exc:
        if store.remote:
            log.warning("could not record state %r in %s: %s", state, store.location, exc)
            return
        try:
            with open(store.root / "state.json", "w") as handle:
                handle.write(json.dumps(value))
        except OSError as exc:
            log.warning("could not record state %r in %s: %s", state, store.location, exc.strerror)
