"""The Ray Tune function trainable that runs one `s3l_core.train` trial.

Resume order: Ray's own checkpoint (a retried trial in this run), else the newest
checkpoint of the same trial id from an earlier run of the study (a killed driver), else
from scratch. A checkpoint that cannot be read is skipped with a warning and recorded.

On an object store the trial writes under its driver's lease (`TrialContext.lease`): it checks
the lease before it starts, at each round (before reporting the epoch and its checkpoint) and
before writing its record, and if another driver holds the study now it stops without writing
anything (`LeaseLost`): reported as `lease_lost`, never retried (a retry would meet the same lease).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import ray
import torch
from ray import tune

from s3l_core.atomic import atomic_file
from s3l_core.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from s3l_core.config import ConfigError, TrialConfig
from s3l_core.data import DatasetError
from s3l_core.safe_pickle import UnsafePickleError
from s3l_core.trainer import EpochRecord, train
from sweeper.estimate.cost_model import predicted_train_pflops
from sweeper.store.lease import Fence, LeaseLost
from sweeper.tune.live_view import quiet_worker
from sweeper.tune.search_space import from_ray_config
from sweeper.store.object_store import open_store
from sweeper.store.local import Store, trial_id
from sweeper.study.model import Study

log = logging.getLogger("sweeper.tune.trainable")


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one study shares (pickled to the workers)."""

    store_root: str  # absolute, or an object-store URI; must be reachable from every node
    study: Study
    cpus: float
    gpu_fraction: float
    budget_metric: str | None = None  # "gpu_hours" | "pflops"
    budget_limit: float | None = None
    lease: Fence | None = None  # an object store's: the driver's lease, which the trial's writes must still find


EPOCH_RECORD_KEY = "epoch_record"
FAILED_AT_ONCE_KEY = "failed_at_once"  # in the last report of a trial that failed without retries
LEASE_LOST_KEY = "lease_lost"  # in the last report of a trial that stopped because another driver took the lease
# Errors a retry cannot fix (a bad config, missing or malformed data): the trial fails at once
# with its record. Anything else (a crash, a lost node, OOM) raises, and Ray retries it.
PERMANENT_ERRORS = (ConfigError, DatasetError, UnsafePickleError)
BUDGET_METRICS = ("gpu_hours", "pflops")
BUDGET_LEDGER = "budget.json"  # {metric: spent}, kept by the driver as trials end


def budget_spent(store: Store) -> dict[str, float]:
    """What the study's recorded trials have spent, per budget metric (reads every record once:
    the driver calls it once per run; trials read the driver's ledger instead)."""
    spent = dict.fromkeys(BUDGET_METRICS, 0.0)
    for record in store.records():
        metrics = record.get("metrics") or {}
        spent["pflops"] += float(metrics.get("total_pflops") or 0.0)
        spent["gpu_hours"] += float(metrics.get("wall_s") or 0.0) / 3600.0 * float(record.get("gpu_fraction", 0.0))
    return spent


def _ledger(store: Store) -> dict[str, float]:
    try:
        return json.loads(store.get_text(BUDGET_LEDGER) or "{}")
    except json.JSONDecodeError:
        return {}


def _checkpoint_dirs(store: Store, tid: str) -> Iterator[Path]:
    """Local folders of this trial's checkpoints, best first: Ray's own (a retry in this run),
    then each earlier attempt's, newest first (copied from an object store while read)."""
    ray_checkpoint = tune.get_checkpoint()
    if ray_checkpoint is not None:
        with ray_checkpoint.as_directory() as directory:  # an object store's is downloaded
            yield Path(directory)
    yield from store.checkpoint_copies(tid)


def _resume_state(store: Store, tid: str) -> tuple[dict[str, Any] | None, bool]:
    """(checkpoint state or None, whether an unreadable checkpoint was met)."""
    corrupt = False
    with contextlib.closing(_checkpoint_dirs(store, tid)) as directories:  # a copied checkpoint is removed once read
        for directory in directories:
            try:
                return load_checkpoint(directory / CHECKPOINT_NAME), corrupt
            except CheckpointError as exc:
                corrupt = True
                log.warning("trial %s: %s; trying an older checkpoint or starting from scratch", tid, exc)
    return None, corrupt


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    quiet_worker()
    try:
        _run_trial(config, context)
    except LeaseLost as exc:
        # Another driver runs the study now: stop with nothing written, as a permanent outcome (no
        # retry: it would meet the same lease). NaNs: searchers need every metric.
        tune.report({**_objective_values({}, context.gpu_fraction), LEASE_LOST_KEY: str(exc)})


def _run_trial(config: dict[str, Any], context: TrialContext) -> None:
    store = open_store(context.store_root, context.lease)
    store.check_fence()
    point = point_of(context, config)
    trial_config = trial_config_for(context, point)
    tid = trial_id(trial_config.to_dict())
    done = store.read_record(tid)
    if done is not None and done.get("status") == "finished":  # e.g. Optuna proposing a computed point
        tune.report({**_objective_values(done["metrics"], context.gpu_fraction), "store_trial_id": tid, "reused": True})
        return
    if context.budget_metric and context.budget_limit is not None:
        if _ledger(store).get(context.budget_metric, 0.0) >= context.budget_limit:
            store.write_record(new_record(point, trial_config, context, "skipped_budget", "study budget spent before this trial started", _this_node()))
            tune.report({**_objective_values({}, context.gpu_fraction), "store_trial_id": tid, "skipped_budget": True})  # NaNs: searchers need every metric
            return

    torch.set_num_threads(max(1, math.floor(context.cpus)))
    state, corrupt = _resume_state(store, tid)
    last_knn = float("nan")

    def report_epoch(record: EpochRecord, checkpoint_path: Path | None) -> None:
        nonlocal last_knn
        store.check_fence()  # each round: a paused driver's workers go on training after its lease is taken
        if record.final:
            # The last round is reported once the record is written: a scheduler that stops the
            # trial on this report must not lose a finished trial.
            return
        if record.knn_val_top1 is not None:
            last_knn = record.knn_val_top1
        metrics = {
            "store_trial_id": tid,  # not "trial_id": Ray writes its own id under that name in progress.csv
            "epoch": record.epoch,
            "loss": record.loss,
            "knn_val_top1": last_knn,  # carried forward: schedulers need the metric in every report
            "train_pflops": record.train_pflops_cum,
            "wall_s": record.wall_s_cum,
            # lets the driver keep a stopped trial's curve; as text, so Tune does not keep running
            # statistics of each of its numbers for every trial (in memory and in every snapshot)
            EPOCH_RECORD_KEY: json.dumps(dataclasses.asdict(record)),
        }
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_path.parent)) if checkpoint_path else None
        report_replacing_checkpoint(metrics, checkpoint)

    with tempfile.TemporaryDirectory(prefix=f"s3l-{tid}-") as scratch:
        try:
            result = train(trial_config, on_epoch=report_epoch, resume_from=state, checkpoint_dir=Path(scratch))
        except PERMANENT_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"
            store.write_record(new_record(point, trial_config, context, "failed", error, _this_node()))
            tune.report({**_objective_values({}, context.gpu_fraction), "store_trial_id": tid, FAILED_AT_ONCE_KEY: error})  # NaNs: searchers need every metric
            return
        record = new_record(point, trial_config, context, "finished", node=_this_node())
        record.update(metrics=result.metrics(), epochs=[dataclasses.asdict(e) for e in result.epochs], resumed_from_corrupt=corrupt)
        store.write_record(record)
        final = {**_objective_values(record["metrics"], context.gpu_fraction), "store_trial_id": tid, "epoch": result.epochs[-1].epoch, "loss": result.epochs[-1].loss}
        kept = kept_folder(Path(scratch), context.study.keep)
        # one checkpoint per trial: this one replaces the last full one (for `none`, with an empty folder)
        report_replacing_checkpoint(final, tune.Checkpoint.from_directory(str(kept)) if kept is not None else None)


ENCODER_WEIGHTS = "encoder.pt"


def kept_folder(scratch: Path, keep: str) -> Path | None:
    """The folder a finished trial leaves as its checkpoint, by the study's `keep`: the whole last
    checkpoint, only the encoder's weights (`encoder.pt`, a state_dict), or nothing. None when the
    run wrote no checkpoint (resumed from a final one): Ray's last one stands."""
    full = scratch / CHECKPOINT_NAME
    if not full.exists():
        return None
    if keep == "checkpoint":
        return scratch
    folder = scratch / f"kept-{keep}"
    folder.mkdir()
    if keep == "encoder":
        model = load_checkpoint(full)["model"]
        encoder = {k.removeprefix("encoder."): v for k, v in model.items() if k.startswith("encoder.")}
        with atomic_file(folder / ENCODER_WEIGHTS) as handle:
            torch.save(encoder, handle)
    return folder


def report_replacing_checkpoint(metrics: dict[str, Any], checkpoint: tune.Checkpoint | None) -> None:
    """Report, and once Ray has persisted the new checkpoint, delete this trial's previous one.

    One checkpoint per trial is what resuming needs. Ray's own way (`CheckpointConfig(num_to_keep=1)`)
    also forces a full experiment snapshot at every trial checkpoint, each as long as the study:
    the driver's work per trial grew with the trials before it (issue 26, bench/scale.py)."""
    previous = tune.get_checkpoint() if checkpoint is not None else None
    tune.report(metrics, checkpoint=checkpoint)
    current = tune.get_checkpoint()
    if previous is None or current is None or current.path == previous.path:
        return
    try:
        previous.filesystem.delete_dir(previous.path)
    except (FileNotFoundError, OSError) as exc:  # a leftover folder costs space, never the trial
        log.warning("could not delete the superseded checkpoint %s: %s", previous.path, exc)


def _objective_values(metrics: dict[str, Any], gpu_fraction: float) -> dict[str, float]:
    """Final metrics as floats (NaN when absent) so searchers always find their objectives.

    Only validation accuracies reach Ray (`selection_metric`): test numbers stay in the store."""
    keys = ("knn_val_top1", "knn_top1_best", "linear_val_top1", "finetune_val_top1", "train_pflops", "eval_pflops", "total_pflops", "wall_s")
    values = {k: float(metrics[k]) if metrics.get(k) is not None else float("nan") for k in keys}
    values["gpu_hours"] = values["wall_s"] / 3600.0 * gpu_fraction
    return values


def new_record(
    point: dict[str, Any], config: TrialConfig, context: TrialContext, status: str, error: str | None = None, node: str | None = None
) -> dict[str, Any]:
    """A trial record for the store; metrics and epochs are filled in by a finished trial."""
    return {
        "trial_id": trial_id(config.to_dict()),
        "status": status,
        "error": error,
        "point": point,
        "config": config.to_dict(),
        "metrics": {},
        "epochs": [],
        "node": node,
        "gpu_fraction": context.gpu_fraction,
        "cpus": context.cpus,
        "predicted_train_pflops": predicted_train_pflops(config),
    }


def point_of(context: TrialContext, config: dict[str, Any]) -> dict[str, Any]:
    """The sweep point of a Ray config: pre-expanded (grid, random) or sampled by Optuna."""
    if "point" in config:
        return dict(config["point"])
    return {"seed": context.study.seeds[0], **from_ray_config(context.study, config)}


def trial_config_for(context: TrialContext, point: dict[str, Any]) -> TrialConfig:
    """The resolved config of a sweep point; CPU-only trials never touch a GPU they did not reserve."""
    config = context.study.trial_config(point)
    return dataclasses.replace(config, device="cpu") if context.gpu_fraction == 0 else config


def trial_id_for(context: TrialContext, point: dict[str, Any]) -> str:
    """The store's id of a sweep point's trial."""
    return trial_id(trial_config_for(context, point).to_dict())


def _this_node() -> str:
    return f"{platform.node()}:{ray.get_runtime_context().get_node_id()[:8]}"


def unfinished_record(context: TrialContext, point: dict[str, Any], status: str, error: str) -> dict[str, Any]:
    """The record the driver writes for a trial that failed after its retries or was stopped early."""
    return new_record(point, trial_config_for(context, point), context, status, error)
