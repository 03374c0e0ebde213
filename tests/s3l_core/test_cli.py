"""`python -m s3l_core train`: progress, metrics file, and one clear line per bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from s3l_core.cli import build_parser, config_from_args, main

FAST = ["--dataset", "fashion-mnist-sample", "--depth", "10", "--width", "0.125", "--resolution", "8", "--epochs", "2",
        "--data-fraction", "0.02", "--batch-size", "64", "--set", "eval.knn_k=10", "--set", "eval.linear_probe=false",
        "--set", "eval.floors=false", "--device", "cpu"]  # fmt: skip


def test_cli_trains_and_writes_metrics(tmp_path: Path, capsys):
    assert main(["train", *FAST, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "epoch    1" in out and "epoch    2" in out and "knn_top1" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2 and 0 <= metrics["knn_top1"] <= 1
    assert (tmp_path / "checkpoint.pt").exists()
    # --resume from the final checkpoint trains nothing more and gives the same numbers
    assert main(["train", *FAST, "--out", str(tmp_path), "--resume"]) == 0
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert again["knn_top1"] == metrics["knn_top1"] and again["resumed_from_epoch"] == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dataset", "fashion-mnsit"], "did you mean 'fashion-mnist'"),
        (["--method", "simclrr"], "unknown method 'simclrr'"),
        (["--data-fraction", "0"], "data_fraction: 0.0 must be in (0, 1]"),
        (["--data-fraction", "1.5"], "data_fraction: 1.5 must be in (0, 1]"),
        (["--resolution", "0"], "resolution: 0 must be a positive integer"),
        (["--set", "resolution=12.5"], "resolution: 12.5 (float) is not an integer"),
        (["--set", "backbone.widht=1"], "did you mean 'width'"),
        (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent/fm"], "/nonexistent/fm"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path: Path, flags, message):
    done = subprocess.run([sys.executable, "-m", "s3l_core", "train", *FAST, *flags, "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_set_values_are_read_as_a_study_file_reads_them():
    """`--set optimizer.weight_decay=5e-4` is a number (YAML 1.2), as in a study file."""
    args = build_parser().parse_args(["train", "--out", "x", "--set", "optimizer.weight_decay=5e-4", "--set", "eval.finetune={epochs: 2}"])
    config = config_from_args(args)
    assert config.optimizer.weight_decay == 5e-4 and config.eval.finetune.epochs == 2
