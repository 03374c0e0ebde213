"""Predict a trial's cost before it runs: FLOPs (train + evaluation), then wall time and
device-hours on the CPU of this machine and on the GPU kinds of docs/BENCHMARKS.md.

Train FLOPs scale one counted reference (the FLOPs of a width-1.0 step at the same
resolution, depth, stage count and method) by width squared and the number of images: the
textbook scaling of a convolutional network's width. Resolution is counted, not scaled: at
14 px the strided stages round 7, 3.5 and 1.75 up to 7, 4 and 2, so a step costs about 1.2x
what resolution squared from 32 px says. Evaluation FLOPs are counted the
way the trainer counts them (a feature pass over the train and test splits at each kNN
evaluation, the kNN similarity matmul, the linear probe), so the prediction, the budget
(`budget.pflops`) and the ledger all mean the same thing: train + evaluation FLOPs, the
trainer's `total_pflops`. The trainer measures the exact FLOPs of each step, so the report
can show how far this rule of thumb is off (the stem, the projector and the loss do not
scale this way).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from s3l_core.config import MethodConfig, TrialConfig
from s3l_core.recipes import head_sizes

if TYPE_CHECKING:
    from s3l_core.schedule import RunPlan
from s3l_core.cost import forward_flops_per_image, train_step_flops
from s3l_core.dataset_catalog import BUILTIN_SHAPES, assumed_native_size

REFERENCE_BATCH = 256
# Effective throughput of the s3l_core step on one H100 or H200, assumed for every trial shape.
# The one H200 run of bench/gpu.sh measured ResNet-18 w1.0 at batch 512 only (train(): about
# 160 TFLOP/s at 32 px, less at 16 px, where a step is launch-bound). Narrower, smaller trials
# were not measured; being launch-bound they get fewer FLOP/s still, so one figure cannot fit
# all shapes: full-width estimates are pessimistic, narrow small-image ones optimistic
# (docs/design.md, "Cost"; docs/BENCHMARKS.md, "GPU figures").
ASSUMED_GPU_TFLOPS = 24.0
RECALIBRATION_IMAGES = 4096  # s3l_core.finetune.RECALIBRATION_IMAGES (imported lazily there: torch)
LINEAR_PROBE_CLOSURE_CALLS = 100  # L-BFGS max_iter in s3l_core.evaluate.linear_probe_top1 (an upper bound)


@dataclass(frozen=True)
class TrialCost:
    """Predicted FLOPs of one trial, in PFLOPs; `total` is what budgets and the ledger count."""

    train_pflops: float
    eval_pflops: float

    @property
    def total_pflops(self) -> float:
        return self.train_pflops + self.eval_pflops


@dataclass(frozen=True)
class DeviceRate:
    """Effective TFLOP/s of the s3l_core trainer on one device kind, and where the figure comes from."""

    name: str
    tflops: float
    source: str
    is_gpu: bool


GPU_RATES: tuple[DeviceRate, ...] = (
    DeviceRate("H100", ASSUMED_GPU_TFLOPS, "assumed (no H100 figure; docs/design.md, Cost)", True),
    DeviceRate("H200", ASSUMED_GPU_TFLOPS, "assumed (R18 w1.0 measured ~160 at 32 px; narrow, small trials far less)", True),
)


def dataset_shape(name: str) -> tuple[int, int, int]:
    """(train images, channels, classes), without loading the data."""
    if name.startswith("imagefolder:"):
        images, _, classes = _imagefolder_sizes(name.split(":", 1)[1])
        return images, 3, max(1, classes)
    shape = BUILTIN_SHAPES[name]
    return shape.train_images, shape.channels, shape.num_classes


@functools.lru_cache(maxsize=16)
def _imagefolder_sizes(root: str) -> tuple[int, int, int]:
    """(train images, val images, classes) of an imagefolder, listed once per process: a study's
    estimate asks about every trial several times, and listing ImageNet takes seconds."""
    from s3l_core.imagefolder import split_sizes

    return split_sizes(Path(root))


def native_size(config: TrialConfig) -> int:
    """The side the dataset's images come at (an imagefolder's cache size), without reading a file."""
    return assumed_native_size(config.dataset, config.image_size)


def _test_images(config: TrialConfig) -> int:
    """The test split's size: an imagefolder's val/ images."""
    if config.dataset.startswith("imagefolder:"):
        return _imagefolder_sizes(config.dataset.split(":", 1)[1])[1]
    return BUILTIN_SHAPES[config.dataset].test_images


def stem_argument(config: TrialConfig) -> str:
    """The stem the cost references are counted with: the dataset's, as the trainer builds it
    (one place for the stem rule)."""
    from s3l_core.backbone import stem_for

    return stem_for(native_size(config), config.backbone.stem)


def run_plan(config: TrialConfig) -> "RunPlan":
    """The trainer's step plan for `config`, from the dataset's shape (classes taken as equal in size)."""
    from s3l_core.schedule import plan_run

    subset, pool = _pretrain_sizes(config)
    return plan_run(config, subset, pool)


def _pretrain_sizes(config: TrialConfig) -> tuple[int, int]:
    """(pre-training subset, the pool it is drawn from) in images, as the trainer's splits give them."""
    images, _, classes = dataset_shape(config.dataset)
    unlabelled = 0 if config.dataset.startswith("imagefolder:") or config.method == "supervised" else BUILTIN_SHAPES[config.dataset].unlabeled_images
    per_class = images / classes
    bank_per_class = per_class - max(1, round(config.eval.val_fraction * per_class))
    bank = max(1, round(bank_per_class * classes))
    subset = classes * max(1, round(config.data_fraction * bank_per_class))
    if unlabelled:
        subset += max(1, round(config.data_fraction * unlabelled))
    return subset, bank + unlabelled


def _heads_at_full_width(config: TrialConfig) -> MethodConfig:
    """`config`'s head sizes as they would be at width 1.0 (those the recipe scaled with the width;
    sizes a study set stay), so one counted reference serves every width of a study."""
    scaled = head_sizes(config.method, config.backbone.width)
    full = head_sizes(config.method, 1.0)
    m = config.method_params
    names = ("hidden_dim", "projection_dim", "predictor_hidden_dim")
    return replace(m, **{n: f if getattr(m, n) == s else getattr(m, n) for n, s, f in zip(names, scaled, full)})


def predicted_train_pflops_by_resolution(config: TrialConfig) -> dict[int, float]:
    """Training PFLOPs of each pre-training resolution of `config` (one entry unless it has a schedule)."""
    plan = run_plan(config)
    batch = plan.batch_size
    images, channels, classes = dataset_shape(config.dataset)
    reference_backbone = replace(config.backbone, width=1.0)
    reference_params = _heads_at_full_width(config)
    pretrain_images = _pretrain_sizes(config)[0] if config.method == "moco_v2" else None  # the count of no other method depends on it
    by_resolution: dict[int, float] = {}
    for stage in plan.stages:
        reference = train_step_flops(
            config.method, reference_backbone, reference_params, channels, classes, stem_argument(config), stage.resolution, REFERENCE_BATCH,
            pretrain_images,  # MoCo's queue is capped at the pool it trains on
        )
        flops = reference / REFERENCE_BATCH * config.backbone.width**2 * batch * stage.steps
        by_resolution[stage.resolution] = by_resolution.get(stage.resolution, 0.0) + flops / 1e15
    return by_resolution


def predicted_train_pflops(config: TrialConfig) -> float:
    return sum(predicted_train_pflops_by_resolution(config).values())


def eval_resolution(config: TrialConfig) -> int:
    """The resolution features are taken at: `eval.resolution`, else the dataset's native size."""
    return config.eval.resolution or native_size(config)


def _feature_dim(config: TrialConfig) -> int:
    from s3l_core.backbone import BASE_CHANNELS, LAYOUTS

    block, _ = LAYOUTS[config.backbone.depth]
    return max(1, round(BASE_CHANNELS * config.backbone.width * 2 ** (config.backbone.stages - 1))) * block.expansion


def evaluations(config: TrialConfig) -> int:
    """Validation kNN evaluations of a trial: every `eval.every` rounds, and always after the last."""
    rounds = run_plan(config).rounds
    return (rounds - 1) // config.eval.every + 1


def predicted_eval_pflops(config: TrialConfig) -> float:
    """Evaluation FLOPs as `s3l_core.protocol` counts them (reference floors are not counted):
    bank and validation features at each monitoring evaluation; bank, validation and test
    features, the linear probe and fine-tuning once at the end."""
    train_images, channels, classes = dataset_shape(config.dataset)
    test_images = _test_images(config)
    val = max(1, round(config.eval.val_fraction * train_images))
    bank = train_images - val
    resolution = eval_resolution(config)
    per_image = forward_flops_per_image(replace(config.backbone, width=1.0), channels, stem_argument(config), resolution) * config.backbone.width**2
    dim = _feature_dim(config)
    recalibration = per_image * min(bank, RECALIBRATION_IMAGES) if config.eval.bn_recalibrate else 0.0
    monitor = recalibration + per_image * (bank + val) + 2.0 * bank * val * dim
    final = recalibration + per_image * (bank + val + test_images) + 2.0 * bank * (val + test_images) * dim
    probe = LINEAR_PROBE_CLOSURE_CALLS * 6.0 * bank * dim * classes if config.eval.linear_probe else 0.0
    tune = config.eval.finetune
    finetune = 3.0 * per_image * bank * tune.epochs + per_image * (val + test_images) if tune is not None else 0.0
    return ((evaluations(config) - 1) * monitor + final + probe + finetune) / 1e15


def predicted_cost(config: TrialConfig) -> TrialCost:
    return TrialCost(predicted_train_pflops(config), predicted_eval_pflops(config))


def predicted_gpu_hours(pflops: float, gpu_fraction: float) -> float:
    """GPU-hours held at `gpu_fraction`, assuming a packed small trial runs near its solo speed
    (an assumption until `python -m bench packing` has run on a GPU; docs/design.md, "Cost")."""
    seconds = pflops * 1e15 / (ASSUMED_GPU_TFLOPS * 1e12)
    return seconds / 3600 * gpu_fraction


def predicted_seconds(pflops: float, rate: DeviceRate) -> float:
    """Wall seconds of `pflops` at a device's effective rate (start-up and data loading apart)."""
    return pflops * 1e15 / (rate.tflops * 1e12)


def makespan(trial_seconds: Sequence[float], slots: int) -> float:
    """Wall seconds of trials started in order, each as soon as one of `slots` is free (as Ray
    starts them): a long trial beside short ones sets the time, not the mean."""
    free_at = [0.0] * max(1, slots)
    for seconds in trial_seconds:
        earliest = min(range(len(free_at)), key=free_at.__getitem__)
        free_at[earliest] += seconds
    return max(free_at)


def concurrent_trials(max_concurrent: int, cpus_per_trial: float, gpu_per_trial: float, on_gpu: bool, cpu_count: int) -> int:
    """Trials running at once on one machine of this kind (one GPU, or this machine's CPUs)."""
    if on_gpu:
        per_device = math.floor(1 / gpu_per_trial) if 0 < gpu_per_trial <= 1 else 1
    else:
        per_device = max(1, math.floor(cpu_count / max(cpus_per_trial, 1e-9)))
    return max(1, min(max_concurrent, per_device))
