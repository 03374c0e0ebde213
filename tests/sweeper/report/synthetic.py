"""Generated study stores for the report tests and ``bench/report_build.py``.

The tables follow the sweeper's store contract (``results.parquet``, ``epochs.parquet``,
``study.yaml``, ``provenance.json``, optional ``state.json``) with S3L-shaped numbers:
accuracy falls slowly as resolution, width, depth and data shrink while cost falls
quadratically, so the report has a real Pareto front and S3L check to show.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from sweeper.study.resolution_schedule import STAGE_COLUMNS, ResolutionSchedule

RESOLUTIONS = ["8", "12", "16", "20", "28", "14x8,28x2"]  # resolution_schedule values
GRID: dict[str, list[Any]] = {
    "resolution": RESOLUTIONS,
    "backbone.width": [0.25, 0.5, 1.0],
    "data_fraction": [0.1, 0.5, 1.0],
    "backbone.depth": [10, 18],
    "method": ["simclr", "byol"],
}
BASE_TRIAL = {
    "method": "simclr",
    "backbone": {"depth": 18, "width": 0.5, "stages": 4},
    "resolution": 28,
    "epochs": 10,
    "data_fraction": 1.0,
    "batch_size": 512,
    "optimizer": {"lr": 0.5, "weight_decay": 1.0e-4},
    "eval": {"every": 2, "knn_k": 200, "linear_probe": True},
}
TRAIN_IMAGES = 60_000
ERRORS = [
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB <b>(GPU 0)</b>",
    "ValueError: loss is NaN at epoch 3 & lr=0.5 > 0.4",
    'Traceback (most recent call last):\n  File "s3l_core/train.py", line 88\nOSError: <script>alert("err")</script>',
]


def _schedule_space(value: str) -> Any:
    stages = [(int(r), int(e) if e else None) for r, _, e in (p.partition("x") for p in value.split(","))]
    if len(stages) == 1:
        return stages[0][0]
    return [{"resolution": r, "epochs": e} for r, e in stages]


def make_study(name: str, knobs: list[str], seeds: list[int], objectives: dict[str, str] | None = None) -> dict:
    space = {}
    for knob in knobs:
        values = GRID[knob] if knob != "resolution" else [_schedule_space(v) for v in RESOLUTIONS]
        space[knob] = {"grid": values}
    return {
        "name": name,
        "description": "Does pre-training at lower resolution keep accuracy at a fraction of the cost?",
        "dataset": "fashion-mnist",
        "trial": BASE_TRIAL,
        "space": space,
        "seeds": seeds,
        "search": {"algorithm": "grid"},
        "objectives": objectives or {"knn_top1": "max", "train_pflops": "min"},
        "scheduler": {"type": "none"},
        "resources": {"cpu": 2, "gpu": 0.25},
        "max_concurrent": 8,
        "budget": {"gpu_hours": 4},
        "storage": "runs/",
        "report": "reports/",
    }


def make_tables(
    n_trials: int,
    *,
    knobs: tuple[str, ...] = ("resolution", "backbone.width", "data_fraction"),
    failed: float = 0.05,
    running: int = 0,
    pending: int = 0,
    all_failed: bool = False,
    linear_nan: float = 0.2,
    epochs: int = 10,
    seed: int = 0,
    seed_noise: float = 0.003,
    old_shape: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n_trials`` results rows (grid points x seeds, seeds outermost) and their epochs.

    ``old_shape`` writes the columns of stores made before the validation split and
    per-architecture floors (no ``knn_val_top1``, ``test_size``, ``steps``...; per-epoch
    ``knn_top1``)."""
    rng = np.random.default_rng(seed)
    grid = list(itertools.product(*(GRID[k] for k in knobs))) or [()]
    rows = []
    for i in range(n_trials):
        combo = dict(zip(knobs, grid[i % len(grid)]))
        rows.append({"seed": i // len(grid), **combo})
    df = pd.DataFrame(rows)
    n = len(df)
    schedule = df["resolution"].astype(str) if "resolution" in df else pd.Series(["28"] * n)
    stages = [[(int(r), int(e) if e else None) for r, _, e in (p.partition("x") for p in s.split(","))]
              for s in schedule]
    final_res = np.array([s[-1][0] for s in stages], dtype=float)
    # epochs-weighted mean of res^2 (cost) and an "effective" resolution (accuracy)
    res2 = np.array([np.average([r * r for r, _ in s], weights=[e or epochs for _, e in s]) for s in stages])
    eff_res = np.array([s[-1][0] - 2.0 * (len(s) - 1) for s in stages])
    width = df.get("backbone.width", pd.Series(0.5, index=df.index)).astype(float).to_numpy()
    depth = df.get("backbone.depth", pd.Series(18, index=df.index)).astype(int).to_numpy()
    fraction = df.get("data_fraction", pd.Series(1.0, index=df.index)).astype(float).to_numpy()
    method = df.get("method", pd.Series("simclr", index=df.index)).astype(str).to_numpy()

    acc = (
        0.885
        - 0.30 * (1 - np.minimum(eff_res, 28) / 28) ** 2
        - 0.035 * np.log2(1 / width)
        - 0.012 * (depth < 18)
        - 0.05 * np.log10(1 / fraction)
        + 0.004 * (method == "byol")
        + rng.normal(0, seed_noise, n)
    ).clip(0.1, 0.99)
    gflops_per_img = 0.56 * (width / 1.0) ** 2 * (depth / 18) * res2 / 32**2 * 3 * 2  # fwd+bwd, two views
    train_pflops = gflops_per_img * 1e9 * TRAIN_IMAGES * fraction * epochs / 1e15
    img_per_s = 54_000 * 32**2 / res2 / np.sqrt(width)
    gpu_fraction = np.where(final_res <= 16, 0.25, np.where(final_res <= 20, 0.5, 1.0))
    wall_s = 2 * TRAIN_IMAGES * fraction * epochs / img_per_s + 8.0 + rng.uniform(0, 3, n)

    config = {
        "trial_id": [hashlib.sha1(f"{seed}|{r}".encode()).hexdigest()[:12] for r in map(json.dumps, rows)],
        "status": "finished",
        "error": None,
        "seed": df["seed"].astype(int),
        "dataset": "fashion-mnist",
        "method": method,
        "backbone.depth": depth,
        "backbone.stages": 4,
        "backbone.width": width,
        "resolution": final_res.astype(int),
        "resolution_schedule": schedule.to_numpy(),
        "epochs": epochs,
        "data_fraction": fraction,
        "batch_size": 512,
        "optimizer.lr": 0.5,
        "optimizer.weight_decay": 1e-4,
    }
    results = pd.DataFrame(config)
    cells = [ResolutionSchedule.from_label(label).columns() for label in schedule]
    for column in STAGE_COLUMNS:  # the structured schedule, as results.py writes it
        results[column] = [c[column] for c in cells]
    results["knn_top1"] = acc
    results["knn_top1_best"] = acc + np.abs(rng.normal(0, 0.002, n))
    results["linear_top1"] = np.where(rng.random(n) < linear_nan, np.nan, acc + 0.015 + rng.normal(0, 0.003, n))
    results["knn_val_top1"] = acc + rng.normal(0, 0.003, n)
    results["knn_pixels_top1"] = 0.70 + 0.05 * (final_res / 28)
    results["knn_random_top1"] = 0.62 + 0.04 * (final_res / 28) + 0.02 * np.log2(width / 0.25)
    results["test_size"] = 10_000
    results["feature_rank"] = 40 * width * (final_res / 28)
    results["steps"] = np.ceil(TRAIN_IMAGES * 0.9 * fraction / 512) * epochs
    results["steps_config"] = np.nan
    results["train_pflops"] = train_pflops
    results["eval_pflops"] = train_pflops * 0.04
    results["predicted_train_pflops"] = train_pflops * (1 + rng.normal(0.02, 0.04, n))
    results["total_pflops"] = train_pflops * 1.04
    results["wall_s"] = wall_s
    results["train_s"] = wall_s * 0.9
    results["gpu_hours"] = wall_s / 3600 * gpu_fraction
    results["img_per_s"] = img_per_s
    results["gpu_fraction"] = gpu_fraction
    results["peak_mem_mb"] = 300 + 2500 * res2 / 28**2 * width
    results["device"] = "NVIDIA H100 80GB HBM3"
    results["node"] = [f"node-{i % 3}" for i in range(n)]
    results["epochs_done"] = epochs
    results["resumed_from_corrupt"] = rng.random(n) < 0.02

    status = np.array(["finished"] * n, dtype=object)
    if all_failed:
        status[:] = "failed"
    else:
        status[rng.random(n) < failed] = "failed"
        tail = np.arange(n)[::-1]
        status[tail[:running]] = "running"
        status[tail[running : running + pending]] = "pending"
    results["status"] = status
    not_done = status != "finished"
    results.loc[not_done, ["knn_top1", "knn_val_top1", "knn_top1_best", "linear_top1", "train_pflops", "eval_pflops",
                           "total_pflops", "wall_s", "train_s", "gpu_hours", "img_per_s", "peak_mem_mb",
                           "feature_rank", "steps"]] = np.nan
    epochs_done = np.full(n, epochs)
    epochs_done[status == "failed"] = rng.integers(0, epochs, (status == "failed").sum())
    epochs_done[status == "running"] = rng.integers(1, epochs, (status == "running").sum())
    epochs_done[status == "pending"] = 0
    results["epochs_done"] = epochs_done
    failed_idx = np.flatnonzero(status == "failed")
    results["error"] = results["error"].astype(object)
    for j, i in enumerate(failed_idx):
        results.at[i, "error"] = ERRORS[j % len(ERRORS)]
    results["resumed_from_corrupt"] = results["resumed_from_corrupt"] & ~not_done
    curves = _epochs_table(results, stages, acc, gflops_per_img, res2, img_per_s, fraction, epochs, rng)
    if old_shape:
        results = results.drop(columns=[c for c in NEW_COLUMNS if c in results])
        curves = curves.drop(columns=["step"]).rename(columns={"knn_val_top1": "knn_top1"})
    return results, curves


# columns the trainer rework added (validation split, per-architecture floors, test size, steps)
NEW_COLUMNS = ("knn_val_top1", "test_size", "feature_rank", "steps", "steps_config", "total_pflops", "train_s")


def _epochs_table(results, stages, acc, gflops_per_img, res2, img_per_s, fraction, epochs, rng) -> pd.DataFrame:
    done = results["epochs_done"].to_numpy()
    trial = np.repeat(np.arange(len(results)), done)
    if trial.size == 0:
        return pd.DataFrame(columns=["trial_id", "epoch", "step", "resolution", "loss", "lr", "knn_val_top1",
                                     "train_pflops_cum", "wall_s_cum"])
    epoch = np.concatenate([np.arange(1, d + 1) for d in done]) if done.sum() else np.array([], int)
    resolution = np.array([_stage_at(stages[t], e, epochs) for t, e in zip(trial, epoch)])
    progress = epoch / epochs
    knn = acc[trial] * (1 - 0.35 * np.exp(-4 * progress)) + rng.normal(0, 0.002, trial.size)
    evaluated = (epoch % 2 == 0) | (epoch == epochs)
    per_epoch_pflops = gflops_per_img[trial] * resolution**2 / res2[trial] * 1e9 * TRAIN_IMAGES * fraction[trial] / 1e15
    per_epoch_wall = 2 * TRAIN_IMAGES * fraction[trial] / (img_per_s[trial] * res2[trial] / resolution**2)
    frame = pd.DataFrame({
        "trial_id": results["trial_id"].to_numpy()[trial],
        "epoch": epoch,
        "step": epoch * np.ceil(TRAIN_IMAGES * 0.9 * fraction[trial] / 512),
        "resolution": resolution,
        "loss": 5.5 * np.exp(-1.2 * progress) + 0.3 + rng.normal(0, 0.02, trial.size),
        "lr": 0.5 * 0.5 * (1 + np.cos(math.pi * progress)),
        "knn_val_top1": np.where(evaluated, knn, np.nan),
        "train_pflops_cum": per_epoch_pflops,
        "wall_s_cum": per_epoch_wall,
    })
    grouped = frame.groupby("trial_id", sort=False)
    frame["train_pflops_cum"] = grouped["train_pflops_cum"].cumsum()
    frame["wall_s_cum"] = grouped["wall_s_cum"].cumsum()
    return frame


def _stage_at(stages: list[tuple[int, int | None]], epoch: int, epochs: int) -> int:
    seen = 0
    for res, n in stages:
        seen += n or epochs
        if epoch <= seen:
            return res
    return stages[-1][0]


def write_store(
    store_dir: Path,
    results: pd.DataFrame,
    epochs: pd.DataFrame,
    study: dict,
    *,
    provenance: dict | None = None,
    state: str | None = None,
) -> Path:
    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    results.to_parquet(store_dir / "results.parquet", index=False)
    epochs.to_parquet(store_dir / "epochs.parquet", index=False)
    (store_dir / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    provenance = provenance or {
        "git_sha": "0123456789abcdef0123456789abcdef01234567",
        "dirty": False,
        "versions": {"python": "3.11.2", "torch": "2.9.0", "ray": "2.49.0"},
        "hardware": {"gpu": "NVIDIA H100 80GB HBM3", "cpus": 16},
    }
    (store_dir / "provenance.json").write_text(json.dumps(provenance, indent=2), encoding="utf-8")
    if state is not None:
        (store_dir / "state.json").write_text(json.dumps({"state": state}), encoding="utf-8")
    return store_dir


def make_store(
    store_dir: Path,
    n_trials: int = 60,
    *,
    name: str = "resolution",
    knobs: tuple[str, ...] = ("resolution", "backbone.width", "data_fraction"),
    objectives: dict[str, str] | None = None,
    state: str | None = "finished",
    **table_options: Any,
) -> Path:
    """Write a complete store for ``n_trials`` generated trials; return its folder."""
    results, epochs = make_tables(n_trials, knobs=knobs, **table_options)
    seeds = sorted(int(s) for s in results["seed"].unique())
    study = make_study(name, list(knobs), seeds, objectives)
    return write_store(store_dir, results, epochs, study, state=state)
