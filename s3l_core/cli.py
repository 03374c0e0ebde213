"""`python -m s3l_core train ...`: one pre-training run from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from s3l_core.checkpoint import CHECKPOINT_NAME, CheckpointError
from s3l_core.config import ConfigError, ConfigProblem, TrialConfig, apply_overrides
from s3l_core.image_dataset import DatasetError
from s3l_core.yaml12 import load_value
from s3l_core.trainer import EpochRecord, train

# Shorthand flags for the common knobs; any other key goes through --set.
SHORTHANDS = {
    "dataset": ("dataset", str),
    "method": ("method", str),
    "resolution": ("resolution", int),
    "width": ("backbone.width", float),
    "depth": ("backbone.depth", int),
    "stages": ("backbone.stages", int),
    "epochs": ("epochs", int),
    "steps": ("steps", int),
    "data_fraction": ("data_fraction", float),
    "batch_size": ("batch_size", int),
    "lr": ("optimizer.lr", float),
    "seed": ("seed", int),
    "device": ("device", str),
    "data_dir": ("data_dir", str),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m s3l_core", description="s3l_core: small-scale self-supervised pre-training")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("train", help="pre-train one encoder and evaluate it")
    for flag, (dotted, kind) in SHORTHANDS.items():
        run.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind, help=f"sets {dotted}")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, e.g. --set eval.every=2 (value parsed as YAML)")
    run.add_argument("--download", action="store_true", help="allow downloading the dataset (torchvision)")
    run.add_argument("--out", type=Path, required=True, help="output directory: metrics.json and checkpoint.pt")
    run.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    return parser


def config_from_args(args: argparse.Namespace) -> TrialConfig:
    overrides: dict[str, Any] = {dotted: getattr(args, flag) for flag, (dotted, _) in SHORTHANDS.items() if getattr(args, flag) is not None}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError([ConfigProblem("--set", f"{item!r} is not KEY=VALUE")])
        overrides[key] = load_value(text)  # as a study file reads it: 5e-4 is a number
    if args.download:
        overrides["download"] = True
    return TrialConfig.from_dict(apply_overrides({}, overrides))


def print_epoch(record: EpochRecord, _checkpoint: Path | None) -> None:
    knn = f" knn_val_top1 {record.knn_val_top1:.4f}" if record.knn_val_top1 is not None else ""
    print(
        f"epoch {record.epoch:4d}  step {record.step:6d}  res {record.resolution:3d}px  loss {record.loss:.4f}  lr {record.lr:.4f}"
        f"{knn}  {record.img_per_s:8.0f} img/s  {record.train_pflops_cum:.4f} PFLOPs  {record.wall_s_cum:.1f}s",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    checkpoint = args.out / CHECKPOINT_NAME
    resume = checkpoint if args.resume and checkpoint.exists() else None
    try:
        result = train(config, on_epoch=print_epoch, resume_from=resume, checkpoint_dir=args.out)
    except (DatasetError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metrics = {"config": config.to_dict(), **result.metrics(), "epochs": [vars(r) for r in result.epochs]}
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    summary_keys = (
        "knn_top1", "knn_val_top1", "linear_top1", "finetune_top1", "knn_pixels_top1", "knn_random_top1",
        "linear_pixels_top1", "linear_random_top1", "finetune_random_top1", "feature_rank", "steps", "train_pflops", "eval_pflops", "wall_s", "img_per_s",
    )  # fmt: skip
    summary = {k: result.metrics()[k] for k in summary_keys}
    print(json.dumps(summary))
    return 0
