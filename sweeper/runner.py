"""Run a validated study as Ray Tune trials: the one module that builds a `Tuner`.

Incremental by construction: every sweep point becomes a trial id (a hash of its resolved
config); points whose id has a finished record in the store are never launched again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import ray
import yaml
from ray import tune

from s3l_core.atomic import write_atomic
from sweeper.cost_model import run_plan
from sweeper.live_view import Eta, OptunaTrialTags, StudyReporter, eta_text, logger_callbacks, make_eta, quiet_ray, record_optuna_objectives, tensorboard_hint
from sweeper.loopback import start_local_ray
from sweeper.provenance import provenance
from sweeper.results import write_tables
from sweeper.space import points as sweep_points
from sweeper.space import to_ray_space
from sweeper.store import Store, StoreError, store_root, write_json
from sweeper.study import Study
from sweeper.study_schema import selection_metric
from sweeper.trainable import (
    BUDGET_LEDGER,
    EPOCH_RECORD_KEY,
    FAILED_AT_ONCE_KEY,
    TrialContext,
    budget_spent,
    point_of,
    run_trial,
    trial_config_for,
    trial_id_for,
    unfinished_record,
)

log = logging.getLogger("sweeper")


@dataclass(frozen=True)
class RunSummary:
    store: Path
    total: int
    reused: int
    launched: int
    finished: int
    failed: int
    report: Path | None


EMBEDDED = "local"  # the address that means this process's own Ray, like no address at all
CONNECT_TIMEOUT_S = 5.0
# errno values that mean "the store cannot take more writes", not a bug
STORE_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class ClusterError(RuntimeError):
    """The Ray cluster to attach to cannot be reached or joined."""


def cluster_address(study: Study, address: str | None) -> str | None:
    """The cluster to attach to (`--address`, else RAY_ADDRESS, else cluster.address), or None
    for an embedded Ray; `local` also means embedded."""
    chosen = address or os.environ.get("RAY_ADDRESS") or study.cluster.address
    return None if not chosen or chosen.strip() == EMBEDDED else chosen.strip()


def connect(address: str | None) -> None:
    """Attach to a cluster, or start an embedded Ray bound to loopback with no dashboard.

    An unreachable address fails within seconds with one line (`ClusterError`), instead of
    Ray's minutes of retries and its traceback.
    """
    if ray.is_initialized():
        return
    if not address:
        start_local_ray(log_to_driver=True)
        return
    check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=True)
    except Exception as exc:  # noqa: BLE001 (Ray raises ConnectionError, RuntimeError, AuthenticationError ...)
        raise ClusterError(f"cannot join the Ray cluster at {address}: {_first_line(exc)}; {_connect_hint()}") from None


def check_reachable(address: str) -> None:
    """Raise `ClusterError` unless `HOST:PORT` (or `ray://HOST:PORT`) accepts a TCP connection."""
    if address == "auto":
        return  # Ray looks up the cluster this machine belongs to
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"Ray address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:PORT, auto or local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {reason}; check the host name and port, "
                           "that `ray start --head` runs there, and that no firewall blocks the port") from None


def _connect_hint() -> str:
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return ("a `ray start` cluster of Ray 2.60 uses token authentication: export RAY_AUTH_MODE=token and the "
                "cluster's token (RAY_AUTH_TOKEN, or the file ~/.ray/auth_token from the head) here, then run again")
    return "check that RAY_AUTH_TOKEN (or ~/.ray/auth_token) holds the head node's token and that this Ray version matches the cluster's"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def available_resources(address: str | None) -> dict[str, float]:
    """What trials can use: the Ray this process is attached to (attaching if `address` is
    given), or, for an embedded Ray not started yet, this machine's CPUs and GPUs."""
    if address is None and not ray.is_initialized():
        import torch

        return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}
    connect(address)
    return ray.cluster_resources()


def check_capacity(study: Study) -> None:
    """Refuse a study no node can ever place, instead of letting it wait forever."""
    cluster = ray.cluster_resources()
    need_gpu, need_cpu = study.resources.gpu, study.resources.cpu
    if need_gpu > cluster.get("GPU", 0):
        raise StoreError(f"each trial asks for {need_gpu:g} GPU but the Ray cluster has {cluster.get('GPU', 0):g} GPUs; set resources.gpu: 0 or attach to a GPU cluster")
    if need_cpu > cluster.get("CPU", 0):
        raise StoreError(f"each trial asks for {need_cpu:g} CPUs but the Ray cluster has {cluster.get('CPU', 0):g}")


def _context(study: Study, root: Path) -> TrialContext:
    budget_metric, budget_limit = None, None
    if study.budget.gpu_hours is not None:
        budget_metric, budget_limit = "gpu_hours", study.budget.gpu_hours
    elif study.budget.pflops is not None:
        budget_metric, budget_limit = "pflops", study.budget.pflops
    return TrialContext(str(root), study, study.resources.cpu, study.resources.gpu, budget_metric, budget_limit)


class StudyProgress(tune.Callback):
    """Driver-side bookkeeping: records trials that end without a finished record, keeps the
    budget ledger (`budget.json`, read by each trial before it starts) and writes the study line
    that `StudyReporter` prints under each table."""

    def __init__(self, store: Store, context: TrialContext, total: int, reused: int, eta: Eta | None = None):
        self.store, self.context = store, context
        self.total, self.done, self.failed = total, reused, 0
        self.eta = eta
        self.spent = budget_spent(store)
        self.curves: dict[str, list[dict[str, Any]]] = {}
        self._write_ledger()

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001 (Ray's signature)
        if EPOCH_RECORD_KEY in result:  # held only while the trial runs, so memory follows running trials
            self.curves.setdefault(trial.trial_id, []).append(result[EPOCH_RECORD_KEY])
        if self.eta is not None and result.get("epoch"):
            self.eta.progress(trial.trial_id, trial.config, int(result["epoch"]))

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
        self.done += 1
        if self.eta is not None:
            self.eta.ended(trial.trial_id)
        self._charge(trial)
        error = (trial.last_result or {}).get(FAILED_AT_ONCE_KEY)
        if error:  # a config or data error: its record is written, retrying cannot help
            self.failed += 1
            print(f"trial {trial.trial_id} failed (not retried): {error}", flush=True)
        curve = self.curves.pop(trial.trial_id, [])
        point = point_of(self.context, trial.config)
        if self.store.read_record(trial_id_for(self.context, point)) is None:
            # stopped early by the scheduler (ASHA): no finished record was written; keep its curve
            record = unfinished_record(self.context, point, "stopped", "stopped early by the scheduler")
            record.update(epochs=curve, metrics=_metrics_of_curve(curve))
            self.store.write_record(record)

    def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: ANN001
        # A trial failing on a full or unwritable store would fail again on every retry: stop the run now.
        check_writable(self.store.root, "the study store")

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
        self.failed += 1
        if self.eta is not None:
            self.eta.ended(trial.trial_id)
        self.curves.pop(trial.trial_id, None)
        self._charge(trial)
        error = _last_error_line(trial)
        self.store.write_record(unfinished_record(self.context, point_of(self.context, trial.config), "failed", error))
        print(f"trial {trial.trial_id} failed after its retries: {error}", flush=True)

    def _charge(self, trial: Any) -> None:
        """Add what a trial spent (its last report: cumulative PFLOPs and seconds) to the ledger."""
        last = trial.last_result or {}
        if last.get("reused") or last.get("skipped_budget"):
            return
        pflops = last.get("total_pflops", last.get("train_pflops"))
        self.spent["pflops"] += float(pflops) if pflops == pflops and pflops is not None else 0.0
        wall = last.get("wall_s")
        self.spent["gpu_hours"] += float(wall) / 3600.0 * self.context.gpu_fraction if wall == wall and wall is not None else 0.0
        self._write_ledger()

    def _write_ledger(self) -> None:
        write_json(self.store.root / BUDGET_LEDGER, self.spent)

    def line(self) -> str:
        budget = ""
        if self.context.budget_metric:
            budget = f", {self.spent[self.context.budget_metric]:.4g} of {self.context.budget_limit:g} {self.context.budget_metric} budget spent"
        else:
            budget = f", {self.spent['gpu_hours']:.3g} GPU-hours, {self.spent['pflops']:.3g} PFLOPs spent"
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


def _last_error_line(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()] if path else []
    except OSError:
        lines = []
    return lines[-1][:500] if lines else "unknown error"


def _searcher_and_samples(study: Study, root: Path, pending: list[dict[str, Any]], done: int) -> tuple[Any, dict[str, Any], int]:
    """(search_alg or None, param_space, num_samples) for this run."""
    algorithm = study.search.algorithm
    if algorithm in ("grid", "random"):
        return None, {"point": tune.grid_search(pending)}, 1
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    modes = list(study.objectives.values())
    metrics = [selection_metric(m) for m in study.objectives]  # validation numbers, never test
    if algorithm == "optuna-tpe":
        metrics, modes = metrics[:1], modes[:1]
        sampler = optuna.samplers.TPESampler(seed=study.search.seed)
    else:
        sampler = optuna.samplers.NSGAIISampler(seed=study.search.seed)
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
    store = Store(root)
    report_dir = (Path(study.report) / study.name).absolute() if report else None  # not resolved: a symlink is refused
    with claimed_store(store, report_dir):  # a locked or unwritable store is refused before Ray starts
        connect(cluster_address(study, address))
        check_capacity(study)
        write_atomic(root / "study.yaml", yaml.safe_dump(study.to_dict(), sort_keys=False))
        write_json(root / "provenance.json", provenance(ray.cluster_resources()))
        context = _context(study, root)
        finished = store.finished_ids()

        if study.search.algorithm in ("grid", "random"):
            all_points = sweep_points(study)
            unique: dict[str, dict[str, Any]] = {}  # a point drawn twice is one trial
            for point in all_points:
                unique.setdefault(trial_id_for(context, point), point)
            pending = [p for tid, p in unique.items() if tid not in finished]
            total, reused = len(unique), len(unique) - len(pending)
        else:
            total, reused, pending = study.search.num_samples, min(len(finished), study.search.num_samples), []
        searcher, param_space, num_samples = _searcher_and_samples(study, root, pending, reused)
        launched = len(pending) if searcher is None else num_samples
        print(f"study {study.name}: {total} trials, {reused} already finished (reused), {launched} to run; store {root}", flush=True)
        if launched and "tensorboard" in study.loggers:
            print(tensorboard_hint(store.ray_dir), flush=True)

        write_json(root / "state.json", {"state": "running", "since": _now()})
        state = "crashed"
        try:
            if launched:
                eta = make_eta(study, pending, lambda config: run_plan(trial_config_for(context, point_of(context, config))).rounds)
                try:
                    _tuner(study, store, context, searcher, param_space, num_samples, total, reused, eta, verbose).fit()
                finally:
                    if searcher is not None:  # optuna-dashboard shows the objectives by name
                        record_optuna_objectives(study, _optuna_url(root))
            check_writable(root, "the study store")  # trials that met a full disk failed: say why
            state = "finished"
            results = _finish(store, state, report_dir)
        except KeyboardInterrupt:
            state = "interrupted"
            _finish_quietly(store, state, report_dir)
            raise
        except Exception as exc:  # noqa: BLE001 (a full store shows up as any of Ray's, Tune's or our errors)
            fault = _store_fault(exc, root, report_dir)
            if fault is None:
                _finish_quietly(store, state, report_dir)
                raise
            _write_state(root, f"failed: {fault}")
            kept = len(store.finished_ids())
            raise StoreError(f"{fault}; the {kept} finished trials are kept in {root}: free space (or fix permissions) and `run` again to finish the study") from None
        counts = results["status"].value_counts() if len(results) else {}
        report_path = report_dir / "index.html" if report_dir is not None else None
        return RunSummary(root, total, reused, launched, int(counts.get("finished", 0)), int(counts.get("failed", 0)), report_path)


def _tuner(
    study: Study, store: Store, context: TrialContext, searcher: Any, param_space: dict[str, Any], num_samples: int, total: int, reused: int,
    eta: Eta | None = None, verbose: bool = False,
) -> tune.Tuner:
    scheduler = None
    if study.scheduler.type == "asha":
        from ray.tune.schedulers import ASHAScheduler

        objective = next(iter(study.objectives))
        scheduler = ASHAScheduler(
            time_attr="epoch", metric=selection_metric(objective), mode=study.objectives[objective],
            max_t=10**6, grace_period=study.scheduler.grace_period, reduction_factor=study.scheduler.reduction_factor,
        )  # fmt: skip
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context), {"cpu": study.resources.cpu, "gpu": study.resources.gpu})
    progress = StudyProgress(store, context, total, reused, eta)
    store_name = lambda trial: trial_id_for(context, point_of(context, trial.config))  # noqa: E731 (the store's id names the trial)
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
            storage_path=str(store.ray_dir),
            failure_config=tune.FailureConfig(max_failures=study.failure.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[progress, *logger_callbacks(study, store.root)]
            + ([OptunaTrialTags(searcher, lambda config: trial_id_for(context, point_of(context, config)))] if searcher is not None else []),
            progress_reporter=StudyReporter(study, searcher is None, progress.line, total - reused),
            verbose=3 if verbose else 1,
        ),
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _finish(store: Store, state: str, report_dir: Path | None) -> pd.DataFrame:
    """Leave consistent tables, a state marker and (if asked) a report."""
    results = write_tables(store)
    _write_state(store.root, state)
    if report_dir is not None:
        from sweeper.report import write_report

        write_report(store.root, report_dir)
    return results


def _finish_quietly(store: Store, state: str, report_dir: Path | None) -> None:
    """`_finish` on the way out of an error: the first error is the one to report."""
    try:
        _finish(store, state, report_dir)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write the tables, state or report of %s: %s", store.root, _first_line(exc))
        _write_state(store.root, state)


def _write_state(root: Path, state: str) -> None:
    """state.json, atomically; on a full disk, in place (truncating first frees the space it needs)."""
    value = {"state": state, "at": _now()}
    try:
        write_json(root / "state.json", value)
    except OSError:
        try:
            with open(root / "state.json", "w") as handle:
                handle.write(json.dumps(value))
        except OSError as exc:
            log.warning("could not record state %r in %s: %s", state, root, exc.strerror)


@contextlib.contextmanager
def claimed_store(store: Store, report_dir: Path | None) -> Iterator[None]:
    """Hold the study's lock with the store and report folder checked writable (before hours of
    training, and before Ray starts). A run refused inside leaves no folder behind that it made."""
    made = [top for top in (_first_missing(store.root), report_dir and _first_missing(report_dir)) if top is not None]
    try:
        with store.lock():
            check_writable(store.root, "the study store")
            if report_dir is not None:
                check_writable(report_dir, "the report folder")
            yield
    except BaseException:
        for top in made:
            _remove_if_only_the_lock(top)
        raise


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (what a mkdir -p would create)."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            return missing
        missing = candidate
    return missing


def _remove_if_only_the_lock(top: Path) -> None:
    """Remove `top` if all it holds are empty folders and the store's `.lock` (what a refused run made)."""
    if not top.is_dir() or top.is_symlink():
        return
    files = [f for f in top.rglob("*") if not f.is_dir()]
    if all(f.name == ".lock" for f in files):
        shutil.rmtree(top, ignore_errors=True)


def check_writable(directory: Path, what: str) -> None:
    """Raise `StoreError` unless a file (a few KB, synced) can be written and removed in `directory`,
    which must not be a symbolic link (the report step writes and deletes files there)."""
    if directory.is_symlink():
        raise StoreError(f"{what} {directory} is a symbolic link; refusing to write through it (give its real path)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-") as probe:
            probe.write(b"\0" * 16384)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise StoreError(f"cannot write to {what} {directory}: {exc.strerror or exc}") from None


def _store_fault(exc: BaseException, root: Path, report_dir: Path | None) -> str | None:
    """Why the store or report folder cannot be written, if that is what ended the run."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StoreError):
            return str(seen)
        if isinstance(seen, OSError) and seen.errno in STORE_FULL_ERRNOS:
            return f"cannot write to {seen.filename or root}: {seen.strerror}"
        seen = seen.__cause__ or seen.__context__
    for directory, what in ((root, "the study store"), (report_dir, "the report folder")):
        try:
            if directory is not None:
                check_writable(directory, what)
        except StoreError as fault:
            return str(fault)
    return None
