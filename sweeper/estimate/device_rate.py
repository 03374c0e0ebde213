"""This machine's CPU rate for the cost model: effective TFLOP/s of a trainer step of a given
trial shape, measured once (about two seconds) and cached per CPU model, thread count, torch
version and shape.

Each cached rate records when (UTC), where (host, CPU model, torch) and under what load (the
1-minute load average and the core count) it was measured. A rate measured at a load above the
core count is ignored and measured again: the cores were shared, and it understates this CPU.
`estimate --remeasure` measures a study's shapes again whatever the cache holds. A cache written
before these records (a bare number per shape) is still used, its conditions unknown.

The rate depends on the shape: on a CPU a narrow or small-image step spends much of its time
on memory traffic and per-layer overhead rather than arithmetic (about 0.018 TFLOP/s for a
ResNet-10 at width 0.25 and 8 px, 0.045 for a ResNet-18 at width 0.5 and 16 px, one thread of
the 2-core machine of docs/BENCHMARKS.md), so `estimate` measures each shape a study trains.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from s3l_core.cache import cache_dir
from s3l_core.config import AugmentConfig, BackboneConfig, MethodConfig, TrialConfig
from sweeper.estimate.cost_model import (
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


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none); tests replace it."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def utc_now() -> datetime:
    """Now, in UTC; tests replace it."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Conditions:
    """When, where and under what load a rate was measured."""

    measured_utc: str  # ISO 8601, seconds
    host: str
    device: str  # the CPU model
    torch: str
    load1: float | None  # 1-minute load average just before measuring
    cpus: int | None

    @property
    def overloaded(self) -> bool:
        """More runnable work than cores: the timed steps shared them, so the rate is too low."""
        return self.load1 is not None and self.cpus is not None and self.load1 > self.cpus


def current_conditions() -> Conditions:
    import torch

    return Conditions(utc_now().isoformat(timespec="seconds"), platform.node(), _cpu_model(), torch.__version__, load_average(), os.cpu_count())


@dataclass(frozen=True)
class CachedRate:
    tflops: float
    conditions: Conditions | None  # None: cached before rates recorded them (a bare number)


def read_rate(value: Any) -> CachedRate | None:
    """A cache entry: a bare number (an old cache: conditions unknown) or a record; else None (re-measured)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return CachedRate(float(value), None)
    if not isinstance(value, dict) or not isinstance(value.get("tflops"), (int, float)):
        return None
    names = [f.name for f in dataclasses.fields(Conditions)]
    try:
        return CachedRate(float(value["tflops"]), Conditions(**{name: value.get(name) for name in names}))
    except TypeError:
        return None


def rate_record(rate: CachedRate) -> dict[str, Any]:
    return {"tflops": rate.tflops, **(dataclasses.asdict(rate.conditions) if rate.conditions else {})}


def usable(rate: CachedRate | None) -> bool:
    return rate is not None and not (rate.conditions is not None and rate.conditions.overloaded)


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


def cpu_rates(threads: int, shapes: list[StepShape], measure: bool = True, remeasure: bool = False) -> dict[StepShape, CachedRate] | None:
    """The rate of each shape at `threads` threads per trial: cached, else measured now (or None
    when `measure` is False and a shape has no usable cached rate). `remeasure`: measure every
    shape again. A rate measured at a load above the cores counts as not cached."""
    import torch

    threads = max(1, min(threads, os.cpu_count() or 1))
    machine = f"{_cpu_model()}|{os.cpu_count()} cpus|{threads} threads|torch {torch.__version__}"
    path = cache_path()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    keys = {shape: f"{machine}|{shape.label}" for shape in shapes}
    found = {shape: read_rate(cached.get(keys[shape])) for shape in dict.fromkeys(shapes)}
    missing = list(found) if remeasure else [shape for shape, rate in found.items() if not usable(rate)]
    if missing:
        if not measure:
            return None
        print(_measuring_line(missing, found, remeasure, path), file=sys.stderr, flush=True)
        for shape in missing:
            conditions = current_conditions()  # before the timed steps, which raise the load themselves
            found[shape] = CachedRate(measure_cpu_tflops(threads, shape), conditions)
            cached[keys[shape]] = rate_record(found[shape])
        if any(found[shape].conditions.overloaded for shape in missing):
            c = found[missing[0]].conditions
            print(f"warning: measured at a load of {c.load1:.1f} on {c.cpus} cores, so slower than this CPU is; measured again next time", file=sys.stderr, flush=True)
        from s3l_core.atomic import write_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cached, indent=1))  # other shapes' entries (old bare numbers too) kept as they were
    return {shape: found[shape] for shape in shapes}


def _measuring_line(missing: list[StepShape], found: dict[StepShape, CachedRate | None], remeasure: bool, path: Path) -> str:
    overloaded = sum(1 for shape in missing if found[shape] is not None and not usable(found[shape]))
    why = " (--remeasure)" if remeasure else (f" ({overloaded} cached at a load above the cores)" if overloaded else ", once")
    which = f"the {len(found)}" if len(missing) == len(found) else f"{len(missing)} of the {len(found)}"  # the others are cached
    return f"measuring this CPU's speed at {which} step shape(s) (network x resolution) these trials train at{why} (cached in {path})"


def measured_note(rates: list[CachedRate]) -> str:
    """When and at what load a prediction's rates were measured, for `estimate`'s rate column."""
    known = [r.conditions for r in rates if r.conditions is not None]
    if not known:
        return "time and load not recorded: an older cache, --remeasure records them"
    days = sorted({c.measured_utc[:10] for c in known})
    loads = [c.load1 for c in known if c.load1 is not None]
    when = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
    load = f" at a load of at most {max(loads):.1f} on {known[0].cpus} cores" if loads else ""
    unknown = f"; {len(rates) - len(known)} of {len(rates)} older, time and load not recorded" if len(known) < len(rates) else ""
    return f"{when}{load}{unknown}"


def _trial_parts(config: TrialConfig) -> list[tuple[int, float]]:
    """(resolution, PFLOPs) of each part of a trial: training at each pre-training resolution,
    then evaluation at the evaluation resolution."""
    return [*predicted_train_pflops_by_resolution(config).items(), (eval_resolution(config), predicted_eval_pflops(config))]


@dataclass(frozen=True)
class CpuPrediction:
    """Predicted CPU seconds of each trial, and the rates of the step shapes timed for them."""

    seconds: tuple[float, ...]
    rates: tuple[CachedRate, ...]  # one per distinct step shape

    @property
    def shapes(self) -> int:
        return len(self.rates)


def cpu_trial_seconds(configs: list[TrialConfig], threads: int, measure: bool = True, remeasure: bool = False) -> CpuPrediction | None:
    """Predicted CPU seconds of each trial: each part's FLOPs at the rate of its own shape (None
    when `measure` is False and a shape has no usable cached rate)."""
    parts = [[(step_shape(c, r), pflops) for r, pflops in _trial_parts(c)] for c in configs]
    rates = cpu_rates(threads, [shape for trial in parts for shape, _ in trial], measure, remeasure)
    if rates is None:
        return None
    seconds = tuple(sum(pflops * 1e3 / rates[shape].tflops for shape, pflops in trial) for trial in parts)  # PFLOP / (TFLOP/s) = 1e3 s
    return CpuPrediction(seconds, tuple(rates.values()))


def cpu_rate(config: TrialConfig, threads: int, measure: bool = True, remeasure: bool = False) -> DeviceRate | None:
    """This CPU's effective rate for trials like `config` (its FLOPs over its predicted seconds)."""
    prediction = cpu_trial_seconds([config], threads, measure, remeasure)
    if prediction is None:
        return None
    tflops = predicted_cost(config).total_pflops * 1e3 / prediction.seconds[0]
    source = f"measured on this machine at the base trial's shape ({measured_note(list(prediction.rates))}; {cache_path()})"
    return DeviceRate(cpu_rate_name(threads), tflops, source, False)


def cpu_rate_name(threads: int) -> str:
    return f"CPU ({threads} thread{'s' if threads > 1 else ''}/trial)"
