"""Checks of how a study runs: `search`, `objectives`, `scheduler`, `resources`, `budget`,
`failure` and where it writes (`storage`, `report`), and how they fit together (an ASHA
objective, a GPU budget for GPU trials, a report folder apart from the stores)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from s3l_core.config import TrialConfig, did_you_mean
from s3l_core.quoting import brief
from sweeper.study.checker import StudyChecker
from sweeper.study.model import Budget, FailureConfig, Resources, SchedulerConfig, SearchConfig
from sweeper.study.schema import EPOCH_METRICS, OBJECTIVE_METRICS, is_int, is_number
from sweeper.study.space_checks import MAX_SEED
from sweeper.store.uris import display_uri, is_uri, local_path_of

MAX_RETRIES = 10  # a trial that failed this often will fail again


def check_search(c: StudyChecker) -> SearchConfig:
    section = c.section("search")
    algorithm = c.value("search.algorithm", section) or "grid"
    if "num_samples" in section:
        num_samples = c.value("search.num_samples", section)
        if algorithm == "grid" and num_samples and num_samples > 1:
            c.warn("search.num_samples", "grid search repeats identical trials, and identical configs are "
                   "reused, not re-run: add seeds to repeat a configuration")
    else:
        num_samples = 1
        if algorithm != "grid":
            c.problem("search", f"num_samples is required for {algorithm} search (how many configurations to try)")
    seed = c.value("search.seed", section)
    if is_int(seed) and seed > MAX_SEED:
        c.problem("search.seed", f"{seed} is not an integer from 0 to {MAX_SEED}")
        seed = 0
    return SearchConfig(algorithm, num_samples or 1, seed)


def check_objectives(c: StudyChecker, search: SearchConfig) -> dict[str, str]:
    raw = c.data.get("objectives")
    if "objectives" not in c.data:
        c.problem("objectives", "is required, e.g. {knn_top1: max, train_pflops: min}")
        return {}
    if not isinstance(raw, dict) or not raw:
        c.problem("objectives", f"expected a mapping of metric -> max or min, such as {{knn_top1: max}}, got {brief(raw)}")
        return {}
    out = {}
    for metric, mode in raw.items():
        path = f"objectives.{metric}"
        if metric not in OBJECTIVE_METRICS:
            c.problem(path, f"unknown metric '{metric}'" + did_you_mean(str(metric), list(OBJECTIVE_METRICS)))
        elif mode not in ("max", "min"):
            c.problem(path, f"{brief(mode)} must be max or min")
        else:
            out[metric] = mode
    if search.algorithm == "optuna-tpe" and len(raw) > 1:
        c.warn("objectives", f"optuna-tpe optimises the first objective only ({next(iter(raw))}); use optuna-nsga2 for several")
    if search.algorithm == "optuna-nsga2" and len(raw) == 1:
        c.warn("objectives", "optuna-nsga2 is for several objectives; with one, optuna-tpe is usually better")
    return out


def check_scheduler(c: StudyChecker, objectives: dict[str, str]) -> SchedulerConfig:
    section = c.section("scheduler")
    scheduler = SchedulerConfig(
        c.value("scheduler.type", section),
        c.value("scheduler.grace_period", section),
        c.value("scheduler.reduction_factor", section),
    )
    first = next(iter(objectives), None)
    if scheduler.type == "asha" and first is not None and first not in EPOCH_METRICS:
        c.problem("scheduler.type", f"asha stops trials on a metric reported every epoch, but the first "
                  f"objective '{first}' is only known at the end: put {' or '.join(EPOCH_METRICS)} first")
    return scheduler


def check_resources(c: StudyChecker, config: TrialConfig | None) -> Resources:
    section = c.section("resources")
    cpu = c.value("resources.cpu", section)
    gpu = c.value("resources.gpu", section)
    if "gpu" in section and is_number(gpu) and gpu > 1 and not float(gpu).is_integer():
        c.problem("resources.gpu", f"{gpu} GPUs: above 1 a trial takes whole GPUs")
    if c.cluster is not None:
        have_cpu = float(c.cluster.get("CPU", 0) or 0)
        have_gpu = float(c.cluster.get("GPU", 0) or 0)
        if is_number(cpu) and cpu > have_cpu:
            c.problem("resources.cpu", f"asks for {cpu:g} CPU per trial but the cluster has {have_cpu:g} CPUs")
        if is_number(gpu) and gpu > have_gpu:
            c.problem("resources.gpu", f"asks for {gpu:g} GPU per trial but the cluster has {have_gpu:g} GPUs")
    if config is not None and gpu == 0 and config.device.startswith("cuda"):
        c.problem("trial.device", f"is '{config.device}' but resources.gpu is 0: a trial would get no GPU")
    return Resources(cpu, gpu)


def check_budget(c: StudyChecker, resources: Resources) -> Budget:
    section = c.section("budget")
    budget = Budget(c.value("budget.gpu_hours", section), c.value("budget.pflops", section))
    if "gpu_hours" in section and "pflops" in section:
        c.problem("budget", "give either gpu_hours or pflops, not both")
    if budget.gpu_hours is not None and resources.gpu == 0:
        c.problem("budget.gpu_hours", "the trials use no GPU (resources.gpu is 0), so no GPU-hours are ever spent; "
                  "budget a CPU study in pflops (train + eval FLOPs, see `estimate`)")
    return budget


def check_failure(c: StudyChecker) -> FailureConfig:
    retries = c.value("failure.max_retries", c.section("failure"))
    if is_int(retries) and retries > MAX_RETRIES:
        c.problem("failure.max_retries", f"{retries} retries: at most {MAX_RETRIES} (crashes are retried; config and data errors fail at once)")
        retries = MAX_RETRIES
    return FailureConfig(retries)


def check_locations(c: StudyChecker, storage: str | None, report: str | None) -> None:
    """`report:` apart from `storage:`: the report of a study goes to `<report>/<name>/` and its
    store to `<storage>/<name>/`, so the same folder would put each report into its own study's store,
    and a report folder inside the storage folder (or holding it) mixes reports and stores, and a
    report named like a study is written into that study's store."""
    if not isinstance(storage, str) or not isinstance(report, str):
        return  # an invalid value is reported at its own line
    stores, reports = _location_parts(storage), _location_parts(report)
    if stores == reports:
        c.problem("report", f"{_shown(report)} is the storage folder too: each study's report would be written into its store "
                  "(<storage>/<name>/); write reports elsewhere, e.g. reports/")
    elif reports[: len(stores)] == stores:
        c.problem("report", f"{_shown(report)} lies inside storage {_shown(storage)}, among the study stores; "
                  "write reports elsewhere, e.g. reports/")
    elif stores[: len(reports)] == reports:
        c.problem("report", f"{_shown(report)} holds storage {_shown(storage)}: the study stores would lie inside the report folder; "
                  "write reports elsewhere, e.g. reports/")


def _location_parts(location: str) -> tuple[str, ...]:
    """A location as comparable parts: the scheme, the bucket and the path's folders (no query) of a URI;
    'file' and the resolved path's folders of a local path, resolved as the store's own folder is."""
    if is_uri(location):
        parts = urlsplit(location)
        return (parts.scheme, parts.netloc, *(name for name in parts.path.split("/") if name))
    return ("file", *Path(local_path_of(location)).resolve().parts)


def _shown(location: str) -> str:
    return brief(display_uri(location) if is_uri(location) else location)
