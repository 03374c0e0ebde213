"""Shared pieces of the benchmarks: machine description, tables, JSON output, the trainer's step.

`TrainStep` and `s3l_batches` reuse s3l_core's own pieces (backbone, method, `make_views`,
bf16 autocast and channels_last on CUDA) in the order of the trainer's inner loop, so a
benchmark loop does per step exactly what `s3l_core.trainer.train` does.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from s3l_core.backbone import bf16_autocast, build_resnet, conv_memory_format, stem_for
from s3l_core.config import AugmentConfig, BackboneConfig, TrialConfig
from s3l_core.cost import train_step_flops
from s3l_core.methods import SSLMethod, build_method
from s3l_core.views import make_views, preset_for

ROOT = Path(__file__).resolve().parents[1]

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of the device name.
BF16_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10G", 70e12),
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    cpu = f"{os.cpu_count()}-core {platform.machine()} CPU ({cpu_model()}), load average {os.getloadavg()[0]:.1f} at start"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}; host {cpu}; torch {torch.__version__}"
    return f"{cpu}, no GPU used; torch {torch.__version__}"


def bf16_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAK_FLOPS:
        if key in name:
            return peak
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> str:
    """Print (and return) a Markdown table of `rows` restricted to `columns`."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            if math.isnan(value):
                return "-"
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    text = (f"{title}\n\n" if title else "") + "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(path: str | Path | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=1, default=str))


def synthetic_images(count: int, channels: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Random uint8 images (N, C, S, S): augmentation and training cost do not depend on content."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, size, size), dtype=torch.uint8, generator=generator).to(device)


class TrainStep:
    """One optimisation step of the trainer (SimCLR by default) on two ready views.

    Built like `s3l_core.trainer.train`: same backbone and method builders, SGD with
    momentum and weight decay, channels_last and bf16 autocast on CUDA, optional
    `torch.compile(model.loss)`.
    """

    def __init__(
        self,
        width: float,
        resolution: int,
        device: torch.device,
        *,
        depth: int = 18,
        channels: int = 3,
        num_classes: int = 10,
        method: str = "simclr",
        compile: bool = False,
        compile_mode: str | None = None,
        lr: float = 0.1,
        seed: int = 0,
    ):
        self.device, self.method, self.resolution = device, method, resolution
        self.backbone = BackboneConfig(depth=depth, width=width, stages=4)
        self.channels, self.num_classes = channels, num_classes
        torch.manual_seed(seed)
        encoder = build_resnet(depth, width, 4, channels, stem_for(resolution))
        # the method's reference heads at this width, as a trial resolves them
        self.params = TrialConfig.from_dict({"method": method, "backbone": {"width": width}}).method_params
        self.model: SSLMethod = build_method(method, encoder, self.params, num_classes).to(device)
        self.layout = conv_memory_format(device)
        self.model = self.model.to(memory_format=self.layout)
        self.model.train()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimiser = torch.optim.SGD(trainable, lr=lr, momentum=0.9, weight_decay=5e-4)
        self.lr = lr
        self.loss_fn = torch.compile(self.model.loss, mode=compile_mode) if compile else self.model.loss
        self.autocast = bf16_autocast(device)

    def __call__(self, view1: torch.Tensor, view2: torch.Tensor, labels: torch.Tensor, progress: float) -> torch.Tensor:
        for group in self.optimiser.param_groups:
            group["lr"] = self.lr  # the trainer sets its schedule's lr every step
        view1, view2 = view1.contiguous(memory_format=self.layout), view2.contiguous(memory_format=self.layout)
        with self.autocast:
            loss = self.loss_fn(view1, view2, labels)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.model.after_step(progress)
        return loss.detach().float()

    def flops(self, batch: int) -> float:
        """FLOPs of one step, counted on the meta device by s3l_core.cost."""
        return train_step_flops(self.method, self.backbone, self.params, self.channels, self.num_classes, stem_for(self.resolution), self.resolution, batch)


def channel_mean_std(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from s3l_core.data import channel_stats

    mean, std = channel_stats(images[:4096].cpu())
    return torch.tensor(mean, device=images.device), torch.tensor(std, device=images.device)


def s3l_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch: int,
    resolution: int,
    method: str = "simclr",
    augment: AugmentConfig | None = None,
    seed: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Endless (view1, view2, labels) from uint8 images on their device, as the trainer makes them.

    A fresh permutation per pass, batches indexed on the device, both views from
    `s3l_core.views.make_views` with the method's preset and a device generator.
    """
    device = images.device
    mean, std = channel_mean_std(images)
    preset = preset_for(method, augment or AugmentConfig(), images.shape[-1])  # as the trainer: from the stored images
    order_rng = torch.Generator().manual_seed(seed)
    view_rng = torch.Generator(device=device).manual_seed(seed + 1)
    steps = len(images) // batch
    while True:
        permutation = torch.randperm(len(images), generator=order_rng).to(device)
        for i in range(steps):
            index = permutation[i * batch : (i + 1) * batch]
            view1, view2 = make_views(images[index], resolution, preset, mean, std, view_rng)
            yield view1, view2, labels[index]


def timed_steps(step: TrainStep, batches: Iterator[tuple[torch.Tensor, ...]], warmup: int, steps: int) -> dict[str, float]:
    """Run `warmup` untimed then `steps` timed steps; the loss is summed on the device and read once
    (the trainer's one host sync per epoch), which also waits for the device."""
    device = step.device
    loss_sum = torch.zeros((), device=device)
    first_start = time.perf_counter()
    for i in range(warmup):
        view1, view2, labels = next(batches)
        loss_sum += step(view1.to(device, non_blocking=True), view2.to(device, non_blocking=True), labels.to(device, non_blocking=True), i / (warmup + steps))
    float(loss_sum)
    sync(device)
    warm_s = time.perf_counter() - first_start
    start = time.perf_counter()
    for i in range(steps):
        view1, view2, labels = next(batches)
        loss_sum += step(view1.to(device, non_blocking=True), view2.to(device, non_blocking=True), labels.to(device, non_blocking=True), (warmup + i) / (warmup + steps))
    loss = float(loss_sum)
    sync(device)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "warmup_s": warm_s, "step_s": elapsed / steps, "loss_sum": loss}
