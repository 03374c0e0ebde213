"""This machine's CPU rate for the cost model: effective TFLOP/s of a trainer step, measured
once (about two seconds) and cached per CPU model, thread count and torch version."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from s3l_core.cache import cache_dir  # torch-free: `estimate` reads the cached rate without torch
from sweeper.cost_model import DeviceRate

# The measured step: SimCLR, ResNet-18 at width 0.25, 16 px, batch 64, one channel; the size
# of the CPU-sized studies (studies/cpu/, quickstart), whose rate is what a CPU user plans with.
PROBE_WIDTH, PROBE_RESOLUTION, PROBE_BATCH, PROBE_SECONDS = 0.25, 16, 64, 1.5


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_path() -> Path:
    return cache_dir() / "cpu_rate.json"


def measure_cpu_tflops(threads: int) -> float:
    """Time SGD steps of the probe model on the CPU with `threads` torch threads."""
    import torch

    from s3l_core.backbone import build_resnet, stem_for
    from s3l_core.config import TrialConfig
    from s3l_core.cost import train_step_flops
    from s3l_core.methods import build_method

    probe = TrialConfig.from_dict({"dataset": "fashion-mnist-sample", "method": "simclr", "backbone": {"width": PROBE_WIDTH}})
    backbone, params = probe.backbone, probe.method_params
    stem = stem_for(28)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        model = build_method("simclr", build_resnet(backbone.depth, backbone.width, backbone.stages, 1, stem), params, 10)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
        views = [torch.randn(PROBE_BATCH, 1, PROBE_RESOLUTION, PROBE_RESOLUTION, generator=generator) for _ in range(2)]
        labels = torch.zeros(PROBE_BATCH, dtype=torch.long)

        def step() -> None:
            optimiser.zero_grad(set_to_none=True)
            model.loss(views[0], views[1], labels).backward()
            optimiser.step()

        step()  # warm-up: first-call allocations
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < PROBE_SECONDS:
            step()
            steps += 1
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    flops = train_step_flops("simclr", backbone, params, 1, 10, stem, PROBE_RESOLUTION, PROBE_BATCH)
    return flops * steps / seconds / 1e12


def cpu_rate(threads: int, measure: bool = True) -> DeviceRate | None:
    """This machine's rate at `threads` threads per trial: cached, else measured now (or None
    when `measure` is False and nothing is cached)."""
    import torch

    threads = max(1, min(threads, os.cpu_count() or 1))
    key = f"{_cpu_model()}|{os.cpu_count()} cpus|{threads} threads|torch {torch.__version__}"
    path = _cache_path()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key not in cached:
        if not measure:
            return None
        cached[key] = measure_cpu_tflops(threads)
        from s3l_core.atomic import write_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cached, indent=1))
    return DeviceRate(f"CPU ({threads} thread{'s' if threads > 1 else ''}/trial)", float(cached[key]), f"measured on this machine ({path})", False)
