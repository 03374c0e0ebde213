"""One pre-training trial: `train(config) -> TrialResult`.

The pre-training images live on the training device as uint8; every batch's two views are
made there in a few batched tensor ops (docs/design.md: per-sample CPU augmentation is the
usual bottleneck). The run follows `s3l_core.schedule` (stages with their own warm-up and
cosine, reported in rounds) and is evaluated by `s3l_core.protocol` (validation kNN while
training; test, linear probe, fine-tuning and floors once at the end). All randomness comes
from explicit generators whose states are saved in each round's checkpoint, so a resumed
run on the CPU reproduces an uninterrupted one.
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

from s3l_core.backbone import bf16_autocast, build_resnet, conv_memory_format, stem_for
from s3l_core.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from s3l_core.config import TrialConfig
from s3l_core.cost import train_step_flops
from s3l_core.data import channel_stats, load_dataset
from s3l_core.image_dataset import ImageDataset
from s3l_core.methods import SSLMethod, build_method
from s3l_core.optim import build_optimizer
from s3l_core.protocol import Evaluator, FinalMetrics, Floors
from s3l_core.schedule import RunPlan, plan_run
from s3l_core.splits import trial_splits
from s3l_core.views import make_views, preset_for


@dataclass(frozen=True)
class EpochRecord:
    """One round of training (an epoch of the pre-training subset, or of the pool in steps mode)."""

    epoch: int  # 1-based round
    step: int  # optimiser steps done at the end of the round
    resolution: int
    loss: float
    lr: float
    knn_val_top1: float | None  # None on rounds without evaluation
    train_pflops_cum: float
    wall_s_cum: float
    img_per_s: float
    final: bool = False  # the last round of the run


@dataclass(frozen=True)
class TrialResult:
    knn_top1: float  # test split, once at the end
    knn_val_top1: float
    knn_top1_best: float  # best validation kNN over the run's evaluations
    linear_top1: float | None
    linear_val_top1: float | None
    finetune_top1: float | None
    finetune_val_top1: float | None
    knn_pixels_top1: float | None  # floors, test split
    knn_random_top1: float | None
    knn_val_pixels_top1: float | None  # floors, validation split
    knn_val_random_top1: float | None
    linear_pixels_top1: float | None  # the linear probe's floors (s3l_core.protocol.PROTOCOL_FLOORS)
    linear_random_top1: float | None
    linear_val_pixels_top1: float | None
    linear_val_random_top1: float | None
    finetune_random_top1: float | None  # the same fine-tuning from random initialisation
    finetune_val_random_top1: float | None
    feature_rank: float
    test_size: int
    val_size: int
    pretrain_images: int
    steps: int
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
        """Flat final metrics and costs (no per-round records)."""
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


def _config_identity(config: TrialConfig) -> dict[str, Any]:
    """The parts of a config that must match for a checkpoint to be resumed."""
    return {k: v for k, v in config.to_dict().items() if k not in ("device", "compile", "data_dir", "download")}


class BatchStream:
    """Batches of indices drawn from seeded permutations of the pool, one after another; a
    new permutation starts when fewer than a batch remain (drop-last). Its position is part
    of each checkpoint, so a run in steps crosses permutation boundaries the same way resumed."""

    def __init__(self, size: int, batch_size: int, generator: torch.Generator):
        self.size, self.batch_size, self.generator = size, batch_size, generator
        self.permutation = torch.empty(0, dtype=torch.int64)
        self.cursor = 0

    def next(self) -> torch.Tensor:
        if self.cursor + self.batch_size > len(self.permutation):
            self.permutation = torch.randperm(self.size, generator=self.generator)
            self.cursor = 0
        batch = self.permutation[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return batch

    def state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "permutation": self.permutation, "cursor": self.cursor}

    def load(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.permutation, self.cursor = state["permutation"], state["cursor"]


def train(
    config: TrialConfig,
    on_epoch: EpochCallback | None = None,
    resume_from: Path | dict[str, Any] | None = None,
    checkpoint_dir: Path | None = None,
    dataset: ImageDataset | None = None,
) -> TrialResult:
    """Pre-train one encoder as `config` says and evaluate it.

    After each round a checkpoint is written atomically to `checkpoint_dir/checkpoint.pt`
    (when given) and `on_epoch(record, checkpoint_path)` is called. `resume_from` (a
    checkpoint path or loaded state) continues an interrupted run.
    """
    started = time.perf_counter()
    device = resolve_device(config.device)
    data = dataset or load_dataset(config.dataset, config.data_dir, config.download, config.image_size)
    splits = trial_splits(data, config.eval.val_fraction, config.data_fraction, config.seed, labelled_only=config.method == "supervised")
    plan = plan_run(config, splits.pretrain_size, splits.full_pool_size)
    pretrain_images = splits.pretrain_images.to(device)
    pretrain_labels = splits.pretrain_labels.to(device)
    mean_list, std_list = channel_stats(splits.pretrain_images)
    mean = torch.tensor(mean_list, device=device)
    std = torch.tensor(std_list, device=device)
    stem = stem_for(data.native_size, config.backbone.stem)

    torch.manual_seed(config.seed)
    b = config.backbone
    encoder = build_resnet(b.depth, b.width, b.stages, data.channels, stem)
    model: SSLMethod = build_method(config.method, encoder, config.method_params, data.num_classes, num_train_images=splits.pretrain_size).to(device)
    layout = conv_memory_format(device)
    model = model.to(memory_format=layout)
    optimiser = build_optimizer(model, config.optimizer)
    stream = BatchStream(splits.pretrain_size, plan.batch_size, torch.Generator().manual_seed(config.seed))
    view_rng = torch.Generator(device=device).manual_seed(config.seed + 1)
    loss_fn = model.loss
    if config.compile:
        # A process that trains many trials (a reused Ray actor) would otherwise hit dynamo's
        # recompile limit and silently fall back to eager.
        torch._dynamo.reset()
        loss_fn = torch.compile(model.loss)
    presets = {res: preset_for(config.method, config.augment, data.native_size) for res, _ in config.stage_plan()}  # the same for every stage
    step_flops = {
        res: train_step_flops(config.method, b, config.method_params, data.channels, data.num_classes, stem, res, plan.batch_size, splits.pretrain_size)
        for res in presets
    }
    evaluator = Evaluator(config, splits, stem, data.native_size, data.num_classes, mean, std, device)

    history: list[EpochRecord] = []
    start_round, eval_flops, train_s, elapsed_before = 0, 0.0, 0.0, 0.0
    final: dict[str, Any] | None = None
    if resume_from is not None:
        state = load_checkpoint(resume_from) if isinstance(resume_from, Path) else resume_from
        if state.get("config") != _config_identity(config):
            raise CheckpointError("checkpoint was written by a different trial config; refusing to resume from it")
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
        stream.load(state["stream"])
        view_rng.set_state(state["view_rng"])
        history = [EpochRecord(**r) for r in state["history"]]
        start_round, eval_flops, train_s, elapsed_before = state["epoch"], state["eval_flops"], state["train_s"], state["wall_s"]
        final = state.get("final")

    autocast = bf16_autocast(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_flops = history[-1].train_pflops_cum * 1e15 if history else 0.0
    lr = 0.0
    for round_index in range(start_round, plan.rounds):
        first_step = round_index * plan.steps_per_round
        last_step = min(plan.total_steps, first_step + plan.steps_per_round)
        model.train()
        round_start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        for step in range(first_step, last_step):
            stage, local_step = plan.stage_at(step)
            if local_step == 0 and step > 0:
                optimiser.state.clear()  # a new stage starts afresh from the checkpoint, as S3L's continued pre-training
            lr = plan.learning_rate(step)
            for group in optimiser.param_groups:
                group["lr"] = lr
            index = stream.next().to(device)
            view1, view2 = make_views(pretrain_images[index], stage.resolution, presets[stage.resolution], mean, std, view_rng)
            view1, view2 = view1.contiguous(memory_format=layout), view2.contiguous(memory_format=layout)
            with autocast:
                loss = loss_fn(view1, view2, pretrain_labels[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            model.after_step((step + 1) / plan.total_steps)
            loss_sum += loss.detach().float()
            train_flops += step_flops[stage.resolution]
        steps_done = last_step - first_step
        round_loss = float(loss_sum) / steps_done  # one host sync per round
        if not math.isfinite(round_loss):
            raise FloatingPointError(f"training loss became {round_loss} in round {round_index + 1}; lower optimizer.lr")
        round_train_s = time.perf_counter() - round_start
        train_s += round_train_s

        is_last = round_index + 1 == plan.rounds
        knn_val = None
        if is_last:
            model.eval()
            metrics, flops = evaluator.final(model.encoder)
            eval_flops += flops
            floors = evaluator.floors() if config.eval.floors else None  # reference points, not this trial's cost
            final = {"metrics": dataclasses.asdict(metrics), "floors": dataclasses.asdict(floors) if floors else None}
            knn_val = metrics.knn_val_top1
        elif (round_index + 1) % config.eval.every == 0:
            model.eval()
            knn_val, flops = evaluator.monitor(model.encoder)
            eval_flops += flops
        record = EpochRecord(
            epoch=round_index + 1,
            step=last_step,
            resolution=plan.stage_at(last_step - 1)[0].resolution,
            loss=round_loss,
            lr=lr,
            knn_val_top1=knn_val,
            train_pflops_cum=train_flops / 1e15,
            wall_s_cum=elapsed_before + time.perf_counter() - started,
            img_per_s=steps_done * plan.batch_size / round_train_s,
            final=is_last,
        )
        history.append(record)
        checkpoint_path = None
        if checkpoint_dir is not None:
            checkpoint_path = checkpoint_dir / CHECKPOINT_NAME
            save_checkpoint(
                {
                    "config": _config_identity(config),
                    "epoch": round_index + 1,
                    "model": model.state_dict(),
                    "optimizer": optimiser.state_dict(),
                    "stream": stream.state(),
                    "view_rng": view_rng.get_state(),
                    "history": [dataclasses.asdict(r) for r in history],
                    "eval_flops": eval_flops,
                    "train_s": train_s,
                    "wall_s": elapsed_before + time.perf_counter() - started,
                    "final": final,
                },
                checkpoint_path,
            )
        if on_epoch is not None:
            on_epoch(record, checkpoint_path)

    if final is None:
        raise CheckpointError("the run ended without its final evaluation; its last checkpoint is incomplete")
    wall_s = elapsed_before + time.perf_counter() - started
    sizes = (len(splits.test_labels), len(splits.val_labels), splits.pretrain_size)
    return _result(config, *sizes, plan, history, final, train_flops, eval_flops, train_s, wall_s, device, start_round)


def _result(
    config: TrialConfig,
    test_size: int,
    val_size: int,
    pretrain_size: int,
    plan: RunPlan,
    history: list[EpochRecord],
    final: dict[str, Any],
    train_flops: float,
    eval_flops: float,
    train_s: float,
    wall_s: float,
    device: torch.device,
    start_round: int,
) -> TrialResult:
    m = FinalMetrics(**final["metrics"])
    f = Floors(**final["floors"]) if final.get("floors") else None
    evaluated = [r.knn_val_top1 for r in history if r.knn_val_top1 is not None]
    images_trained = plan.total_steps * plan.batch_size
    return TrialResult(
        knn_top1=m.knn_top1,
        knn_val_top1=m.knn_val_top1,
        knn_top1_best=max(evaluated),
        linear_top1=m.linear_top1,
        linear_val_top1=m.linear_val_top1,
        finetune_top1=m.finetune_top1,
        finetune_val_top1=m.finetune_val_top1,
        knn_pixels_top1=f.test_pixels if f else None,
        knn_random_top1=f.test_random if f else None,
        knn_val_pixels_top1=f.val_pixels if f else None,
        knn_val_random_top1=f.val_random if f else None,
        linear_pixels_top1=f.linear_test_pixels if f else None,
        linear_random_top1=f.linear_test_random if f else None,
        linear_val_pixels_top1=f.linear_val_pixels if f else None,
        linear_val_random_top1=f.linear_val_random if f else None,
        finetune_random_top1=f.finetune_test_random if f else None,
        finetune_val_random_top1=f.finetune_val_random if f else None,
        feature_rank=m.feature_rank,
        test_size=test_size,
        val_size=val_size,
        pretrain_images=pretrain_size,
        steps=plan.total_steps,
        train_pflops=train_flops / 1e15,
        eval_pflops=eval_flops / 1e15,
        wall_s=wall_s,
        train_s=train_s,
        img_per_s=images_trained / train_s if train_s else 0.0,
        peak_mem_mb=_peak_memory_mb(device),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        epochs=tuple(history),
        resumed_from_epoch=start_round,
    )


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
