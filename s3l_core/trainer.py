"""One pre-training trial: `train(config) -> TrialResult`.

The dataset lives on the training device as uint8; every batch's two views are made
there in a few batched tensor ops (DESIGN.md: per-sample CPU augmentation is the usual
bottleneck). All randomness comes from two explicit generators whose states are saved
in each epoch's checkpoint, so a resumed run on the CPU reproduces an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from s3l_core.backbone import SMALL_STEM_BELOW, build_resnet
from s3l_core.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from s3l_core.config import TrialConfig
from s3l_core.cost import forward_flops_per_image, train_step_flops
from s3l_core.data import ImageDataset, channel_stats, load_dataset, stratified_subset
from s3l_core.evaluate import extract_features, knn_flops, knn_top1, linear_probe_top1, pixel_features
from s3l_core.methods import SSLMethod, build_method
from s3l_core.views import make_views, preset_for


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    resolution: int
    loss: float
    lr: float
    knn_top1: float | None  # None on epochs without evaluation
    train_pflops_cum: float
    wall_s_cum: float
    img_per_s: float


@dataclass(frozen=True)
class TrialResult:
    knn_top1: float
    knn_top1_best: float
    linear_top1: float | None
    knn_pixels_top1: float | None
    knn_random_top1: float | None
    train_pflops: float
    eval_pflops: float
    wall_s: float
    train_s: float
    img_per_s: float  # source images per second of training (each gives two views)
    peak_mem_mb: float
    device: str
    epochs: tuple[EpochRecord, ...]
    resumed_from_epoch: int  # 0 for a fresh start

    def metrics(self) -> dict[str, Any]:
        """Flat final metrics and costs (no per-epoch records)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "epochs"}
        out["total_pflops"] = self.train_pflops + self.eval_pflops
        return out


EpochCallback = Callable[[EpochRecord, Path | None], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' was asked for but CUDA is not available")
    return device


def learning_rate(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up then cosine decay to zero, per step."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _config_identity(config: TrialConfig) -> dict[str, Any]:
    """The parts of a config that must match for a checkpoint to be resumed."""
    return {k: v for k, v in config.to_dict().items() if k not in ("device", "compile", "data_dir", "download")}


class _Evaluator:
    """Frozen-feature evaluation of one encoder on the full train and test splits."""

    def __init__(self, config: TrialConfig, data: ImageDataset, mean: torch.Tensor, std: torch.Tensor, device: torch.device):
        self.config = config
        self.data = data
        self.mean, self.std = mean, std
        self.device = device
        self.resolution = config.eval.resolution or data.native_size
        self.stem_size = config.max_resolution
        per_image = forward_flops_per_image(config.backbone, data.channels, self.stem_size, self.resolution)
        self.feature_pass_flops = per_image * (len(data.train_images) + len(data.test_images))

    def features(self, encoder: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        extract = lambda images: extract_features(encoder, images, self.resolution, self.mean, self.std, self.device)  # noqa: E731
        return extract(self.data.train_images), extract(self.data.test_images)

    def knn(self, train_features: torch.Tensor, test_features: torch.Tensor) -> tuple[float, float]:
        """(accuracy, FLOPs of the similarity search)."""
        e = self.config.eval
        accuracy = knn_top1(train_features, self.data.train_labels, test_features, self.data.test_labels, e.knn_k, e.knn_temperature)
        return accuracy, knn_flops(len(train_features), len(test_features), train_features.shape[1])

    def floors(self) -> tuple[float, float]:
        """(raw-pixel kNN, random-encoder kNN): what no pre-training reaches.

        The same for every trial that shares dataset, architecture, evaluation settings and
        seed, so a process that runs many trials (a reused Ray actor) computes them once.
        """
        c, e = self.config, self.config.eval
        key = (self.data.name, c.data_dir, c.backbone, self.stem_size < SMALL_STEM_BELOW, self.resolution, c.seed, e.knn_k, e.knn_temperature, self.device.type)
        if key not in _FLOOR_CACHE:
            pixel_train = pixel_features(self.data.train_images, self.resolution, self.mean, self.std, self.device)
            pixel_test = pixel_features(self.data.test_images, self.resolution, self.mean, self.std, self.device)
            pixels, _ = self.knn(pixel_train, pixel_test)
            torch.manual_seed(c.seed)
            b = c.backbone
            random_encoder = build_resnet(b.depth, b.width, b.stages, self.data.channels, self.stem_size).to(self.device).eval()
            random, _ = self.knn(*self.features(random_encoder))
            _FLOOR_CACHE[key] = (pixels, random)
        return _FLOOR_CACHE[key]


_FLOOR_CACHE: dict[tuple[Any, ...], tuple[float, float]] = {}


def train(
    config: TrialConfig,
    on_epoch: EpochCallback | None = None,
    resume_from: Path | dict[str, Any] | None = None,
    checkpoint_dir: Path | None = None,
    dataset: ImageDataset | None = None,
) -> TrialResult:
    """Pre-train one encoder as `config` says and evaluate it.

    After each epoch a checkpoint is written atomically to `checkpoint_dir/checkpoint.pt`
    (when given) and `on_epoch(record, checkpoint_path)` is called. `resume_from` (a
    checkpoint path or loaded state) continues an interrupted run.
    """
    started = time.perf_counter()
    device = resolve_device(config.device)
    data = dataset or load_dataset(config.dataset, config.data_dir, config.download, config.max_resolution)
    subset = stratified_subset(data.train_labels, config.data_fraction, config.seed)
    train_images = data.train_images[subset].to(device)
    train_labels = data.train_labels[subset].to(device)
    mean_list, std_list = channel_stats(data.train_images)
    mean = torch.tensor(mean_list, device=device)
    std = torch.tensor(std_list, device=device)

    torch.manual_seed(config.seed)
    encoder = build_resnet(config.backbone.depth, config.backbone.width, config.backbone.stages, data.channels, config.max_resolution)
    model: SSLMethod = build_method(config.method, encoder, config.method_params, data.num_classes).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(trainable, lr=config.optimizer.lr, momentum=config.optimizer.momentum, weight_decay=config.optimizer.weight_decay)
    order_rng = torch.Generator().manual_seed(config.seed)
    view_rng = torch.Generator(device=device).manual_seed(config.seed + 1)
    loss_fn = model.loss
    if config.compile:
        # A process that trains many trials (a reused Ray actor) would otherwise hit dynamo's
        # recompile limit and silently fall back to eager.
        torch._dynamo.reset()
        loss_fn = torch.compile(model.loss)
    preset = preset_for(config.method, config.augment)
    evaluator = _Evaluator(config, data, mean, std, device)

    batch_size = min(config.batch_size, len(subset))
    steps_per_epoch = len(subset) // batch_size
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = steps_per_epoch * config.optimizer.warmup_epochs
    plan = [res for res, n in config.stage_plan() for _ in range(n)]  # resolution of each epoch

    history: list[EpochRecord] = []
    start_epoch, eval_flops, train_s, elapsed_before = 0, 0.0, 0.0, 0.0
    floors: tuple[float, float] | None = None
    if resume_from is not None:
        state = load_checkpoint(resume_from) if isinstance(resume_from, Path) else resume_from
        if state.get("config") != _config_identity(config):
            raise CheckpointError("checkpoint was written by a different trial config; refusing to resume from it")
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
        order_rng.set_state(state["order_rng"])
        view_rng.set_state(state["view_rng"])
        history = [EpochRecord(**r) for r in state["history"]]
        start_epoch, eval_flops, train_s, elapsed_before = state["epoch"], state["eval_flops"], state["train_s"], state["wall_s"]
        floors = tuple(state["floors"]) if state.get("floors") else None  # type: ignore[assignment]

    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_flops = history[-1].train_pflops_cum * 1e15 if history else 0.0
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, config.epochs):
        resolution = plan[epoch]
        step_flops = train_step_flops(config.method, config.backbone, config.method_params, data.channels, data.num_classes, config.max_resolution, resolution, batch_size)
        model.train()
        epoch_start = time.perf_counter()
        permutation = torch.randperm(len(subset), generator=order_rng).to(device)
        loss_sum = torch.zeros((), device=device)
        for i in range(steps_per_epoch):
            lr = learning_rate(step, total_steps, warmup_steps, config.optimizer.lr)
            for group in optimiser.param_groups:
                group["lr"] = lr
            index = permutation[i * batch_size : (i + 1) * batch_size]
            view1, view2 = make_views(train_images[index], resolution, preset, mean, std, view_rng)
            if device.type == "cuda":
                view1 = view1.contiguous(memory_format=torch.channels_last)
                view2 = view2.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = loss_fn(view1, view2, train_labels[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            model.after_step((step + 1) / total_steps)
            loss_sum += loss.detach().float()
            step += 1
        epoch_loss = float(loss_sum) / steps_per_epoch  # one host sync per epoch
        if not math.isfinite(epoch_loss):
            raise FloatingPointError(f"training loss became {epoch_loss} in epoch {epoch + 1}; lower optimizer.lr")
        epoch_train_s = time.perf_counter() - epoch_start
        train_s += epoch_train_s
        train_flops += step_flops * steps_per_epoch

        knn = None
        if (epoch + 1) % config.eval.every == 0 or epoch + 1 == config.epochs:
            model.eval()
            train_features, test_features = evaluator.features(model.encoder)
            knn, search_flops = evaluator.knn(train_features, test_features)
            eval_flops += evaluator.feature_pass_flops + search_flops
        record = EpochRecord(
            epoch=epoch + 1,
            resolution=resolution,
            loss=epoch_loss,
            lr=lr,
            knn_top1=knn,
            train_pflops_cum=train_flops / 1e15,
            wall_s_cum=elapsed_before + time.perf_counter() - started,
            img_per_s=steps_per_epoch * batch_size / epoch_train_s,
        )
        history.append(record)
        is_last = epoch + 1 == config.epochs
        linear = None
        if is_last:
            # Final-only evaluation lives in the last checkpoint too, so a resume never redoes it.
            if config.eval.linear_probe:
                linear, probe_flops = linear_probe_top1(train_features, data.train_labels.to(device), test_features, data.test_labels.to(device))
                eval_flops += probe_flops
            if config.eval.floors and floors is None:
                floors = evaluator.floors()  # reference points, not counted in this trial's cost
        checkpoint_path = None
        if checkpoint_dir is not None:
            checkpoint_path = checkpoint_dir / CHECKPOINT_NAME
            save_checkpoint(
                {
                    "config": _config_identity(config),
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimiser.state_dict(),
                    "order_rng": order_rng.get_state(),
                    "view_rng": view_rng.get_state(),
                    "history": [dataclasses.asdict(r) for r in history],
                    "eval_flops": eval_flops,
                    "train_s": train_s,
                    "wall_s": elapsed_before + time.perf_counter() - started,
                    "floors": list(floors) if floors else None,
                    "linear_top1": linear,
                },
                checkpoint_path,
            )
        if on_epoch is not None:
            on_epoch(record, checkpoint_path)

    if start_epoch >= config.epochs:  # resumed from the final checkpoint: nothing left to train
        state = load_checkpoint(resume_from) if isinstance(resume_from, Path) else resume_from  # type: ignore[arg-type]
        linear = state.get("linear_top1")
    evaluated = [r.knn_top1 for r in history if r.knn_top1 is not None]
    images_trained = steps_per_epoch * batch_size * len(history)
    return TrialResult(
        knn_top1=evaluated[-1],
        knn_top1_best=max(evaluated),
        linear_top1=linear,
        knn_pixels_top1=floors[0] if floors else None,
        knn_random_top1=floors[1] if floors else None,
        train_pflops=train_flops / 1e15,
        eval_pflops=eval_flops / 1e15,
        wall_s=elapsed_before + time.perf_counter() - started,
        train_s=train_s,
        img_per_s=images_trained / train_s if train_s else 0.0,
        peak_mem_mb=_peak_memory_mb(device),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        epochs=tuple(history),
        resumed_from_epoch=start_epoch,
    )


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
