"""Predict a trial's cost before it runs.

The prediction scales one measured reference (the FLOPs of a width-1.0 step at 32 px for
the same depth, stage count and method) by width squared, resolution squared and the
number of images: the textbook scaling of a convolutional network. The trainer measures
the exact FLOPs of each step, so the report can show how far this rule of thumb is off
(the stem, the projector and the loss do not scale this way).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from s3l_core.config import TrialConfig
from s3l_core.cost import train_step_flops
from s3l_core.dataset_catalog import BUILTIN_SHAPES

REFERENCE_RESOLUTION = 32
REFERENCE_BATCH = 256
# Effective throughput of the s3l_core step on one H100 (DESIGN.md: ResNet-18, 32 px,
# two views, ~54k img/s = ~24 TFLOP/s counted). Used only to turn PFLOPs into GPU-hours.
ASSUMED_GPU_TFLOPS = 24.0

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def dataset_shape(name: str) -> tuple[int, int, int]:
    """(train images, channels, classes), without loading the data."""
    if name.startswith("imagefolder:"):
        train = Path(name.split(":", 1)[1]) / "train"
        classes = [d for d in train.iterdir() if d.is_dir()] if train.is_dir() else []
        images = sum(1 for c in classes for f in c.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        return images, 3, max(1, len(classes))
    shape = BUILTIN_SHAPES[name]
    return shape.train_images, shape.channels, shape.num_classes


def predicted_train_pflops(config: TrialConfig) -> float:
    images, channels, classes = dataset_shape(config.dataset)
    subset = sum(max(1, round(config.data_fraction * images / classes)) for _ in range(classes))
    batch = min(config.batch_size, subset)
    steps_per_epoch = subset // batch
    reference_backbone = replace(config.backbone, width=1.0)
    reference = train_step_flops(
        config.method, reference_backbone, config.method_params, channels, classes, REFERENCE_RESOLUTION, REFERENCE_RESOLUTION, REFERENCE_BATCH
    )
    per_image = reference / REFERENCE_BATCH * config.backbone.width**2
    total = sum(per_image * (res / REFERENCE_RESOLUTION) ** 2 * batch * steps_per_epoch * epochs for res, epochs in config.stage_plan())
    return total / 1e15


def predicted_gpu_hours(pflops: float, gpu_fraction: float) -> float:
    """GPU-hours held at `gpu_fraction`, assuming a packed small trial runs near its solo speed
    (DESIGN.md: 4 packed 16 px trials gave 3.9x the throughput of one)."""
    seconds = pflops * 1e15 / (ASSUMED_GPU_TFLOPS * 1e12)
    return seconds / 3600 * gpu_fraction
