"""How long a trial trains, in optimiser steps, and its learning rate at each step.

One plan serves the trainer and the cost model, so a prediction and a run count the same
steps. A run is a list of stages (one per resolution); each stage has its own linear
warm-up and cosine decay, as S3L continues pre-training at full resolution from the
small-resolution checkpoint with a schedule of its own. Progress is reported in rounds:
one pass over the pre-training subset when the run length is in epochs; when it is in
steps, the steps one epoch of the whole pre-training pool takes at the configured batch,
so every arm of a data-fraction study reports (and is compared) at the same step counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from s3l_core.config import LR_REFERENCE_BATCH, TrialConfig

DEFAULT_WARMUP_SHARE = 0.1  # of each stage
DEFAULT_WARMUP_EPOCHS_CAP = 10  # the references' warm-up, for long runs


@dataclass(frozen=True)
class StagePlan:
    resolution: int
    steps: int
    warmup_steps: int


@dataclass(frozen=True)
class RunPlan:
    batch_size: int  # the batch actually used (the subset may be smaller than the configured one)
    base_lr: float  # optimizer.lr scaled linearly to `batch_size`
    steps_per_round: int
    stages: tuple[StagePlan, ...]

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    @property
    def rounds(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_round)

    def stage_at(self, step: int) -> tuple[StagePlan, int]:
        """The stage that `step` (0-based, whole run) falls in, and the step's index within it."""
        for stage in self.stages:
            if step < stage.steps:
                return stage, step
            step -= stage.steps
        raise IndexError(f"step {step} is past the end of the run")

    def learning_rate(self, step: int) -> float:
        stage, local = self.stage_at(step)
        return warmup_cosine(local, stage.steps, stage.warmup_steps, self.base_lr)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up then cosine decay to zero, per step."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def plan_run(config: TrialConfig, pretrain_images: int, full_pool_images: int) -> RunPlan:
    """The step plan of `config` on `pretrain_images` images (its data fraction of a pool of
    `full_pool_images`, the pre-training images at fraction 1)."""
    if pretrain_images < 1:
        raise ValueError("a trial needs at least one pre-training image")
    batch = min(config.batch_size, pretrain_images)
    steps_per_epoch = max(1, pretrain_images // batch)
    if config.length_unit == "steps":
        steps_per_round = max(1, full_pool_images // config.batch_size)
        stage_steps = [(res, n) for res, n in config.stage_plan()]
    else:
        steps_per_round = steps_per_epoch
        stage_steps = [(res, n * steps_per_epoch) for res, n in config.stage_plan()]
    stages = tuple(StagePlan(res, n, _warmup_steps(config, n, steps_per_round)) for res, n in stage_steps)
    lr = config.optimizer.lr
    if lr is None:
        raise ValueError("optimizer.lr is unresolved: build configs with TrialConfig.from_dict")
    return RunPlan(batch, lr * batch / LR_REFERENCE_BATCH, steps_per_round, stages)


def _warmup_steps(config: TrialConfig, stage_steps: int, steps_per_round: int) -> int:
    epochs = config.optimizer.warmup_epochs
    if epochs is None:
        return min(round(DEFAULT_WARMUP_SHARE * stage_steps), DEFAULT_WARMUP_EPOCHS_CAP * steps_per_round)
    return min(stage_steps, round(epochs * steps_per_round))
