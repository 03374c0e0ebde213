"""This machine's CPU rate for the cost model: effective TFLOP/s of a trainer step of a given
trial shape, measured once (about two seconds) and cached per CPU model, thread count, torch
version and shape.

The rate depends on the shape: on a CPU a narrow or small-image step spends much of its time
on memory traffic and per-layer overhead rather than arithmetic (about 0.018 TFLOP/s for a
ResNet-10 at width 0.25 and 8 px, 0.045 for a ResNet-18 at width 0.5 and 16 px, one thread of
the 2-core machine of docs/BENCHMARKS.md), so `estimate` measures each shape a study trains.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from s3l_core.cache import cache_dir
from s3l_core.config import AugmentConfig, BackboneConfig, MethodConfig, TrialConfig
from sweeper.cost_model import (
    DeviceRate,
    dataset_shape,
    eval_resolution,
    native_size,
    predicted_cost,
    predicted_eval_pflops,
    predicted_train_pflops_by_resolution,
    stem_argument,
)

PROBE_SECONDS = 1.5  # timed steps per shape, after one warm-up step (at least two steps)
PROBE_MAX_BATCH = 64
PROBE_STEP_FLOPS = 8e9  # heavier shapes are timed at a smaller batch: per-image time barely depends on it on a CPU


@dataclass(frozen=True)
class StepShape:
    """What a trainer step's speed depends on: the method, network, input and resolution."""

    method: str
    backbone: BackboneConfig
    params: MethodConfig
    channels: int
    classes: int
    stem: str
    native_size: int  # the stored images' side, which the views are cropped from
    augment: AugmentConfig
    resolution: int

    @property
    def label(self) -> str:
        b = self.backbone
        return f"{self.method} ResNet-{b.depth} w{b.width:g} {b.stages} stages {self.stem} stem {self.channels}ch from {self.native_size}px {self.resolution}px"


def step_shape(config: TrialConfig, resolution: int) -> StepShape:
    """The shape of `config`'s pre-training step at `resolution`, with the dataset's stem."""
    _, channels, classes = dataset_shape(config.dataset)
    return StepShape(
        config.method, config.backbone, config.method_params, channels, classes, stem_argument(config), native_size(config), config.augment, resolution
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_path() -> Path:
    return cache_dir() / "cpu_rate.json"


def measure_cpu_tflops(threads: int, shape: StepShape) -> float:
    """Time trainer steps of `shape` (two augmented views of a uint8 batch, loss, backward,
    optimiser step) on the CPU with `threads` torch threads."""
    import torch

    from s3l_core.backbone import build_resnet
    from s3l_core.cost import train_step_flops
    from s3l_core.methods import build_method
    from s3l_core.views import make_views, preset_for

    b = shape.backbone
    per_image = train_step_flops(shape.method, b, shape.params, shape.channels, shape.classes, shape.stem, shape.resolution, PROBE_MAX_BATCH) / PROBE_MAX_BATCH
    batch = int(max(2, min(PROBE_MAX_BATCH, PROBE_STEP_FLOPS // per_image)))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        model = build_method(shape.method, build_resnet(b.depth, b.width, b.stages, shape.channels, shape.stem), shape.params, shape.classes)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
        images = torch.randint(0, 256, (batch, shape.channels, shape.native_size, shape.native_size), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, shape.classes, (batch,), generator=generator)
        preset = preset_for(shape.method, shape.augment, shape.native_size)  # as the trainer: from the dataset
        mean, std = torch.full((shape.channels,), 0.5), torch.full((shape.channels,), 0.25)

        def step() -> None:
            view1, view2 = make_views(images, shape.resolution, preset, mean, std, generator)
            optimiser.zero_grad(set_to_none=True)
            model.loss(view1, view2, labels).backward()
            optimiser.step()

        step()  # warm-up: first-call allocations
        steps, start = 0, time.perf_counter()
        while steps < 2 or time.perf_counter() - start < PROBE_SECONDS:
            step()
            steps += 1
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    return per_image * batch * steps / seconds / 1e12


def cpu_rates(threads: int, shapes: list[StepShape], measure: bool = True) -> dict[StepShape, float] | None:
    """TFLOP/s of each shape at `threads` threads per trial: cached, else measured now (or None
    when `measure` is False and a shape is not cached)."""
    import torch

    threads = max(1, min(threads, os.cpu_count() or 1))
    machine = f"{_cpu_model()}|{os.cpu_count()} cpus|{threads} threads|torch {torch.__version__}"
    path = cache_path()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    keys = {shape: f"{machine}|{shape.label}" for shape in shapes}
    missing = [shape for shape in dict.fromkeys(shapes) if keys[shape] not in cached]
    if missing:
        if not measure:
            return None
        print(f"measuring this CPU's speed for {len(missing)} trial shape(s), once (cached in {path})", file=sys.stderr, flush=True)
        for shape in missing:
            cached[keys[shape]] = measure_cpu_tflops(threads, shape)
        from s3l_core.atomic import write_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cached, indent=1))
    return {shape: float(cached[keys[shape]]) for shape in shapes}


def _trial_parts(config: TrialConfig) -> list[tuple[int, float]]:
    """(resolution, PFLOPs) of each part of a trial: training at each pre-training resolution,
    then evaluation at the evaluation resolution."""
    return [*predicted_train_pflops_by_resolution(config).items(), (eval_resolution(config), predicted_eval_pflops(config))]


@dataclass(frozen=True)
class CpuPrediction:
    """Predicted CPU seconds of each trial, and how many step shapes were timed for them."""

    seconds: tuple[float, ...]
    shapes: int


def cpu_trial_seconds(configs: list[TrialConfig], threads: int, measure: bool = True) -> CpuPrediction | None:
    """Predicted CPU seconds of each trial: each part's FLOPs at the rate of its own shape (None
    when `measure` is False and a shape is not cached)."""
    parts = [[(step_shape(c, r), pflops) for r, pflops in _trial_parts(c)] for c in configs]
    rates = cpu_rates(threads, [shape for trial in parts for shape, _ in trial], measure)
    if rates is None:
        return None
    seconds = tuple(sum(pflops * 1e3 / rates[shape] for shape, pflops in trial) for trial in parts)  # PFLOP / (TFLOP/s) = 1e3 s
    return CpuPrediction(seconds, len(rates))


def cpu_rate(config: TrialConfig, threads: int, measure: bool = True) -> DeviceRate | None:
    """This CPU's effective rate for trials like `config` (its FLOPs over its predicted seconds)."""
    prediction = cpu_trial_seconds([config], threads, measure)
    if prediction is None:
        return None
    tflops = predicted_cost(config).total_pflops * 1e3 / prediction.seconds[0]
    return DeviceRate(cpu_rate_name(threads), tflops, f"measured on this machine at the base trial's shape ({cache_path()})", False)


def cpu_rate_name(threads: int) -> str:
    return f"CPU ({threads} thread{'s' if threads > 1 else ''}/trial)"
