"""`python -m sweeper` / `s3l-sweep`: run, status, validate, estimate, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sweeper.study import Study, StudyError, load_study

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3l-sweep", description="S3L studies: sweep small-scale SSL pre-training on Ray and report accuracy against cost.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run (or resume, or extend) a study")
    run.add_argument("study", type=Path, help="study YAML file")
    run.add_argument("--address", help="Ray cluster to attach to (else RAY_ADDRESS, else cluster.address, else an embedded local Ray)")
    run.add_argument("--storage", help="override the study's storage directory")
    run.add_argument("--dry-run", action="store_true", help="validate and list the trials that would run; start nothing")
    run.add_argument("--no-report", action="store_true", help="skip writing the HTML report at the end")
    status = commands.add_parser("status", help="progress of a study from its store")
    status.add_argument("target", type=Path, help="study YAML file or its store directory (runs/<name>)")
    status.add_argument("--storage", help="override the study's storage directory")
    validate = commands.add_parser("validate", help="check study files; print every problem")
    validate.add_argument("studies", type=Path, nargs="+")
    estimate = commands.add_parser("estimate", help="trial count and predicted cost from the cost model")
    estimate.add_argument("study", type=Path)
    report = commands.add_parser("report", help="(re)write the HTML report of a study store")
    report.add_argument("store", type=Path, help="study store directory (runs/<name>)")
    report.add_argument("--out", type=Path, help="report directory (default: the study's report dir / name)")
    return parser


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


class UserFacingError(Exception):
    """A one-line problem the user can fix (a locked store, an unknown store dir ...)."""


def _load(path: Path) -> Study:
    study = load_study(path)
    for warning in study.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return study


def cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.studies:
        try:
            _load(path)
            print(f"{path}: ok")
        except StudyError as exc:
            failed = True
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
    return EXIT_BAD_INPUT if failed else 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from sweeper.estimate import estimate_table

    study = _load(args.study)
    table = estimate_table(study)
    print(table.to_string(index=False))
    print(f"total: {len(table)} trials, {table['predicted_train_pflops'].sum():.4f} PFLOPs, {table['predicted_gpu_hours'].sum():.3f} GPU-hours (predicted)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from sweeper.runner import ClusterError, available_resources, cluster_address, run_study
    from sweeper.store import StoreError

    study = _load(args.study)
    address = cluster_address(study, args.address)
    if args.dry_run and address is not None:
        return cmd_estimate(args)  # a dry run does not attach to a cluster
    try:
        # Validate again against what the cluster offers, so an impossible request is a study error.
        study = load_study(args.study, cluster_resources=available_resources(address))
        if args.dry_run:
            return cmd_estimate(args)
        summary = run_study(study, address=args.address, storage=args.storage, report=not args.no_report)
    except (StoreError, ClusterError) as exc:
        raise UserFacingError(str(exc)) from None
    print(f"study {study.name}: {summary.finished} finished, {summary.failed} failed, {summary.reused} reused, {summary.launched} run now")
    print(f"results: {summary.store / 'results.parquet'}")
    if summary.report:
        print(f"report:  {summary.report}")
    return 1 if summary.failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    from sweeper.results import results_frame
    from sweeper.store import Store

    root = args.target
    if root.is_file():
        from sweeper.runner import store_root

        root = store_root(_load(root), args.storage)
    if not (root / "study.yaml").exists():
        raise UserFacingError(f"{root} is not a study store (no study.yaml); run the study first")
    store = Store(root)
    results = results_frame(store.records())
    counts = results["status"].value_counts().to_dict() if len(results) else {}
    print(f"{root}: state {store.state()}, {len(results)} trial records: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if len(results):
        columns = [c for c in ("trial_id", "status", "resolution_schedule", "backbone.width", "data_fraction", "epochs", "seed", "knn_top1", "train_pflops", "wall_s") if c in results]
        print(results[columns].to_string(index=False))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import yaml

    from sweeper.report import write_report
    from sweeper.results import write_tables
    from sweeper.store import Store

    if not (args.store / "study.yaml").exists():
        raise UserFacingError(f"{args.store} is not a study store (no study.yaml); is it runs/<name>?")
    write_tables(Store(args.store))  # from the trial records, so a running study's report is current
    out = args.out
    if out is None:
        resolved = yaml.safe_load((args.store / "study.yaml").read_text())
        out = Path(resolved.get("report", "reports/")) / resolved["name"]
    from s3l_core.atomic import UnsafeFolderError

    try:
        index = write_report(args.store.resolve(), out.absolute())  # absolute, not resolved: a symlinked folder is refused
    except UnsafeFolderError as exc:
        raise UserFacingError(str(exc)) from None
    print(f"report: {index}")
    return 0


COMMANDS = {"run": cmd_run, "status": cmd_status, "validate": cmd_validate, "estimate": cmd_estimate, "report": cmd_report}
