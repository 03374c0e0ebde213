"""`python -m sweeper` / `s3l-sweep`: run, status, validate, estimate, report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.study.load import load_study
from sweeper.study.model import Study, StudyError
from sweeper.study.overrides import Override, OverrideSyntaxError, parse_overrides

if TYPE_CHECKING:
    from sweeper.store.run_summary import RunSummary

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a program stopped by Ctrl-C
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("s3l-sweep")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """`--version`, looked up only when asked for (importlib.metadata scans the installed packages)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, default: str = argparse.SUPPRESS, help: str | None = None):  # noqa: A002
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object, option_string: str | None = None) -> None:
        print(f"s3l-sweep {_version()}")
        parser.exit()


# Every command takes a study file or its store (runs/<name>, which holds the resolved study.yaml).
TARGET_HELP = "study YAML file, or its store directory (runs/<name>)"
STORE_TARGET_HELP = TARGET_HELP + " or store URI (s3://bucket/prefix/<name>)"
SET_HELP = "change the study as an edit of its file would, e.g. --set trial.epochs=2 --set space.resolution.grid=[14,8] (dotted key, YAML value; repeatable)"


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)


def target_type(text: str) -> Path | str:
    """A command's target: a local path, or an object-store URI kept as text (a Path would fold its //)."""
    return text if "://" in text and not text.startswith("file://") else Path(text.removeprefix("file://"))


def build_parser() -> argparse.ArgumentParser:
    # Parsing imports nothing heavy: torch, Ray and pandas load inside the commands that use them.
    parser = argparse.ArgumentParser(prog="s3l-sweep", description="S3L studies: sweep small-scale SSL pre-training on Ray and report accuracy against cost.")
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run (or resume, or extend) a study")
    run.add_argument("study", type=Path, help=TARGET_HELP)
    run.add_argument("--address", help="Ray cluster to attach to (else RAY_ADDRESS, else cluster.address, else an embedded local Ray)")
    run.add_argument("--storage", help="override the study's storage directory")
    add_set_option(run)
    run.add_argument("--dry-run", action="store_true", help="validate and list the trials that would run (finished ones in the store excluded); start nothing")
    run.add_argument("--no-report", action="store_true", help="skip writing the HTML report at the end")
    run.add_argument("-v", "--verbose", action="store_true", help="show Ray's full output (its status tables, warnings and hints)")
    status = commands.add_parser("status", help="progress of a study from its store")
    status.add_argument("target", type=target_type, help=STORE_TARGET_HELP)
    status.add_argument("--storage", help="override the study's storage directory")
    status.add_argument("--json", action="store_true", help="print the state, counts and trials as one JSON object")
    validate = commands.add_parser("validate", help="check study files; print every problem")
    validate.add_argument("studies", type=Path, nargs="+", help=TARGET_HELP + "; several at once")
    add_set_option(validate)
    estimate = commands.add_parser("estimate", help="the trials and their predicted cost: PFLOPs, wall time and device-hours on this CPU and on GPUs")
    estimate.add_argument("study", type=Path, help=TARGET_HELP)
    add_set_option(estimate)
    estimate.add_argument("--remeasure", action="store_true",
                          help="measure this CPU's rate at the study's step shapes again and update the cache (a cached rate taken at a load above the cores is measured again anyway)")
    report = commands.add_parser("report", help="(re)write the HTML report of a study store")
    report.add_argument("store", type=target_type, help=STORE_TARGET_HELP)
    report.add_argument("--storage", help="override the study's storage directory (with a study file)")
    report.add_argument("--out", type=target_type, help="report directory or URI (default: the study's report / name)")
    return parser


def study_file(target: Path) -> Path:
    """The study file of a target: the file itself, or the resolved study.yaml of a store."""
    return target / "study.yaml" if target.is_dir() and (target / "study.yaml").is_file() else target


def store_of(target: Path | str, storage: str | None = None) -> Path | str:
    """The store of a target: the directory (or URI) itself, or where a study file's results go."""
    if isinstance(target, str) or target.is_dir():
        return target
    from sweeper.store.local import store_root

    return store_root(_load(target), storage)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except StudyError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `... | head`: the reader has gone; stop quietly, as other Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit-time flush must not raise again
        return EXIT_OUTPUT_CLOSED


class UserFacingError(Exception):
    """A one-line problem the user can fix (a locked store, an unknown store dir ...)."""


def overrides_of(args: argparse.Namespace) -> tuple[Override, ...]:
    """The command's `--set`s, parsed; one that is not KEY=VALUE is a one-line error."""
    try:
        return parse_overrides(getattr(args, "overrides", None))
    except OverrideSyntaxError as exc:
        raise UserFacingError(str(exc)) from None


def _load(path: Path, check_cost: bool = False, overrides: tuple[Override, ...] = ()) -> Study:
    study = load_study(path, check_cost=check_cost, overrides=overrides)
    for warning in study.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return study


def cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    overrides = overrides_of(args)  # the same edits of every file
    for path in args.studies:
        try:
            _load(study_file(path), overrides=overrides)
            print(f"{path}: ok")
        except StudyError as exc:
            failed = True
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
    return EXIT_BAD_INPUT if failed else 0


def cmd_estimate(args: argparse.Namespace) -> int:
    study = _load(study_file(args.study), check_cost=True, overrides=overrides_of(args))  # refused before torch is imported; then the cost ceiling
    from sweeper.estimate.render import render_estimate

    print(render_estimate(study, remeasure=args.remeasure))
    return 0


def _dry_run(study: Study, storage: str | None) -> int:
    """What `run` would launch now: the study's trials less those finished in its store."""
    from sweeper.estimate.render import render_estimate
    from sweeper.store.object_store import open_store
    from sweeper.store.local import StoreError, identity_problem, store_root

    root = store_root(study, storage)
    try:
        store = open_store(root)
        problem = identity_problem(store, study.name)
        if problem:
            raise UserFacingError(problem)
        finished = store.finished_ids() if store.has("study.yaml") else set()
    except StoreError as exc:
        raise UserFacingError(str(exc)) from None
    print(render_estimate(study, finished_ids=finished))
    if study.search.algorithm.startswith("optuna") and finished:
        print(f"{len(finished)} finished trials in {_shown(root)} count toward num_samples")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    path = study_file(args.study)
    # A malformed study is refused as fast as `validate` (before Ray is imported); a study with
    # nothing to launch or rebuild answers from its store; a trial above the cost ceiling is
    # refused before Ray starts.
    overrides = overrides_of(args)
    study = _load(path, overrides=overrides)
    if not args.dry_run:
        from sweeper.store.run_summary import nothing_to_run

        current = nothing_to_run(study, args.storage, report=not args.no_report)
        if current is not None:
            print(f"study {study.name}: {current.total} trials, {current.reused} already finished (reused), 0 to run; "
                  f"store {_shown(current.store)}; its tables and report are current, so Ray is not started", flush=True)
            return _print_outcome(study, current)
    study = load_study(path, check_cost=True, overrides=overrides)
    from sweeper.tune.cluster import ClusterError, available_resources, cluster_address
    from sweeper.store.local import StoreError

    address = cluster_address(study, args.address)
    if args.dry_run and address is not None:
        return _dry_run(study, args.storage)  # a dry run does not attach to a cluster
    try:
        # Validate again against what the cluster offers, so an impossible request is a study error.
        study = load_study(path, cluster_resources=available_resources(address), overrides=overrides)
        if args.dry_run:
            return _dry_run(study, args.storage)
        from sweeper.tune.runner import StudyInterrupted, run_study

        try:
            summary = run_study(study, address=args.address, storage=args.storage, report=not args.no_report, verbose=args.verbose)
        except StudyInterrupted as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INTERRUPTED
    except (StoreError, ClusterError) as exc:
        raise UserFacingError(str(exc)) from None
    return _print_outcome(study, summary)


def _print_outcome(study: Study, summary: RunSummary) -> int:
    nodes = f"; finished trials ran on {summary.nodes} node{'s' if summary.nodes != 1 else ''}" if summary.nodes else ""
    print(f"study {study.name}: {summary.finished} finished, {summary.failed} failed, {summary.reused} reused, {summary.launched} run now{nodes}")
    print(f"results: {_shown(summary.store, 'results.parquet')}")
    if summary.report:
        print(f"report:  {_shown(summary.report)}")
    if summary.answer:
        print(summary.answer, end="")
    return 1 if summary.failed else 0


def _shown(location: Path | str, name: str | None = None) -> str:
    """A location (`<location>/<name>`) as the user reads it: a URI without its query, which may hold credentials."""
    if isinstance(location, Path):
        return str(location / name if name else location)
    from sweeper.store.object_store import display_uri

    return display_uri(location) + (f"/{name}" if name else "")


def cmd_status(args: argparse.Namespace) -> int:
    from sweeper.store.object_store import open_store
    from sweeper.study.plan import planned_trials
    from sweeper.store.local import StoreError

    root = args.target
    if isinstance(root, Path) and not root.exists():
        raise UserFacingError(f"{root}: no such file or folder (a study file, or its store runs/<name>)")
    try:
        if isinstance(root, Path) and root.is_file():
            from sweeper.store.local import store_root

            study = _load(root)
            root = store_root(study, args.storage)
            store = open_store(root)
            if not store.has("study.yaml"):  # not run yet: nothing to read, nothing wrong
                planned = planned_trials(study)
                _print_status(args, store.location, "not run yet", planned, None)
                return 0
        store = open_store(root)
        if not store.has("study.yaml"):
            raise UserFacingError(f"{store.location} is not a study store (no study.yaml); run the study first")
        try:
            planned: int | None = planned_trials(_stored_study(store))
        except UserFacingError:  # a study.yaml the store's own run did not write: the records still count
            planned = None
        from sweeper.store.results import results_frame  # pandas: only once there is a store to read

        results = results_frame(store.records())
        state = store.state()
    except StoreError as exc:
        raise UserFacingError(str(exc)) from None
    _print_status(args, store.location, state, planned, results)
    return 0


STATUS_COLUMNS = ("trial_id", "status", "resolution_schedule", "backbone.width", "data_fraction", "epochs", "seed", "knn_top1",
                  "knn_pixels_top1", "knn_random_top1", "train_pflops", "wall_s")  # a kNN figure beside its floors


def _print_status(args: argparse.Namespace, location: Any, state: str, planned: int | None, results: Any) -> None:
    """'k of N planned trials finished' (N from the study as it now stands), then the trials; or JSON."""
    counts = results["status"].value_counts().to_dict() if results is not None and len(results) else {}
    finished = int(counts.get("finished", 0))
    if args.json:
        rows = [] if results is None else results[[c for c in STATUS_COLUMNS if c in results]].to_dict("records")
        trials = [{k: None if isinstance(v, float) and v != v else v for k, v in row.items()} for row in rows]  # NaN is not JSON
        print(json.dumps({"store": str(location), "state": state, "planned": planned, "finished": finished,
                          "statuses": {str(k): int(v) for k, v in counts.items()}, "trials": trials}, default=str))
        return
    others = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "finished")
    counted = f"{finished} of {planned} planned trials" if planned is not None else ("1 trial" if finished == 1 else f"{finished} trials")
    state_words = state if state == "not run yet" else f"state {state}"
    print(f"{location}: {state_words}, {counted} finished" + (f" ({others})" if others else ""))
    if results is not None and len(results):
        from sweeper.report.summary import fmt_acc

        table = results[[c for c in STATUS_COLUMNS if c in results]].copy()
        for column in ("knn_top1", "knn_pixels_top1", "knn_random_top1"):  # percentages, as the report prints them
            if column in table:
                table[column] = [fmt_acc(v) if v == v and v is not None else "" for v in table[column]]
        print(table.to_string(index=False))


def _stored_study(store: Any) -> Study:
    """The study a store holds (its resolved study.yaml), validated as a study file is: where its
    report goes comes from it, and a store can come from elsewhere (`name: ../../x` must not escape)."""
    import tempfile

    where = store.join("study.yaml")
    with tempfile.TemporaryDirectory(prefix="s3l-study-") as scratch:
        path = Path(where) if not store.remote else Path(scratch) / "study.yaml"
        if store.remote:
            path.write_text(store.get_text("study.yaml") or "")
        try:
            return load_study(path)
        except StudyError as exc:
            first = str(exc.problems[0]).replace(str(path), where) if exc.problems else "invalid"
    raise UserFacingError(f"the store's study.yaml does not validate ({first}); fix it, or give --out for the report")


def cmd_report(args: argparse.Namespace) -> int:
    from s3l_core.atomic import UnsafeFolderError
    from sweeper.store.claim import report_location, write_study_report
    from sweeper.store.object_store import is_uri, open_store
    from sweeper.store.local import StoreError

    location = store_of(args.store, args.storage)
    try:
        store = open_store(location.resolve() if isinstance(location, Path) else location)
        if not store.has("study.yaml"):
            raise UserFacingError(f"{store.location} is not a study store (no study.yaml); is it runs/<name>, and has the study run?")
        out = args.out if args.out is not None else report_location(_stored_study(store))
        from sweeper.store.results import write_tables  # pandas: only once the store and its study are known good

        write_tables(store)  # from the trial records, so a running study's report is current
        written = write_study_report(store, out.absolute() if isinstance(out, Path) else out)  # absolute, not resolved: a symlinked folder is refused
    except (UnsafeFolderError, StoreError) as exc:
        raise UserFacingError(str(exc)) from None
    print(f"report: {_shown(written.index if is_uri(written.index) else Path(written.index))}")
    print(written.answer, end="")
    return 0


COMMANDS = {"run": cmd_run, "status": cmd_status, "validate": cmd_validate, "estimate": cmd_estimate, "report": cmd_report}
