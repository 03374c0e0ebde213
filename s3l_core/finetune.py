"""Evaluations that change the encoder: batch-norm recalibration and S3L's fine-tuning protocol.

`recalibrate_bn` re-estimates every BN layer's running statistics at the evaluation
resolution (a cumulative average over a few thousand training images, no gradients), so an
encoder pre-trained at 8 px is not evaluated at 28 px with 8 px statistics (`eval.bn_recalibrate`).

`finetune` is S3L's main protocol (Cao & Wu, 2021, arXiv 2103.13559; CupidJay/
Scaled-down-self-supervised-learning `main.py`): the whole network plus a linear classifier
trained on the labelled training images at the evaluation resolution (`eval.finetune`).
Here: SGD with momentum 0.9 and weight decay 5e-4 (none on BN and biases, as
`s3l_core.optim`), the rate `FinetuneConfig.lr` per 256 images scaled to the batch, cosine
decay per step, crop + flip views from the supervised preset (crops of 50-100% of the area,
close to S3L's resize + random crop; no mixup). The top-1 on each evaluation set is measured
once, after the last epoch.

An encoder pre-trained with fewer than 4 stages (S3L's "conv5 removed") gets the missing
stages back for fine-tuning, as S3L's `main_freeze.py` does: a ResNet of all 4 stages built
by `s3l_core.backbone.build_resnet` with fresh (Kaiming-initialised) missing stages and the
pre-trained ones loaded, then a warm-up of the new stages and the classifier with the rest
frozen (S3L: 10 epochs before 120 of fine-tuning; here `STAGE_WARMUP_SHARE` of the
fine-tuning epochs, at least 1), then fine-tuning of everything. As in S3L, BN layers of the
frozen part stay in training mode during the warm-up, so their statistics follow the new
resolution.

FLOPs are counted with `torch.utils.flop_counter` on a meta-device copy of the network (as
`s3l_core.cost` does): one training step per phase, times its steps, plus the evaluation
forward passes. Everything random draws from generators seeded by `seed`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from s3l_core.backbone import ResNet, bf16_autocast, build_resnet, conv_memory_format
from s3l_core.config import AugmentConfig, BackboneConfig, FinetuneConfig, OptimizerConfig
from s3l_core.optim import build_optimizer, scaled_lr
from s3l_core.schedule import warmup_cosine
from s3l_core.views import AugmentPreset, eval_batch, make_views, preset_for

RECALIBRATION_IMAGES = 4096
RECALIBRATION_BATCH = 256
FINETUNE_BATCH = 256
FINETUNE_WEIGHT_DECAY = 5e-4  # S3L's fine-tuning scripts
FINETUNE_MOMENTUM = 0.9
FINETUNE_MIN_SCALE = 0.5
STAGE_WARMUP_SHARE = 0.1
EVAL_BATCH = 1024
FULL_STAGES = 4


@dataclass(frozen=True)
class FinetuneResult:
    top1: dict[str, float]  # per evaluation set given
    flops: float  # training (warm-up included) and evaluation
    encoder: ResNet  # the fine-tuned encoder, all 4 stages
    classifier: nn.Linear


@torch.no_grad()
def recalibrate_bn(
    encoder: nn.Module,
    images_uint8: Tensor,
    resolution: int,
    mean: Tensor,
    std: Tensor,
    device: torch.device,
    num_images: int = RECALIBRATION_IMAGES,
    batch_size: int = RECALIBRATION_BATCH,
    seed: int = 0,
) -> nn.Module:
    """A copy of `encoder` (in eval mode, on `device`) whose BN running statistics are the
    cumulative average over `num_images` seeded-random training images at `resolution`.

    Batches are of equal size (a remainder is dropped) so each image weighs the same; the
    encoder itself is left untouched.
    """
    twin = copy.deepcopy(encoder).to(device)
    norms = [m for m in twin.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return twin.eval()
    chosen = torch.randperm(len(images_uint8), generator=torch.Generator().manual_seed(seed))[:num_images]
    batch = min(batch_size, len(chosen))
    chosen = chosen[: len(chosen) // batch * batch]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: cumulative average over the batches seen
    twin.train()
    with bf16_autocast(device):
        for start in range(0, len(chosen), batch):
            x = eval_batch(images_uint8[chosen[start : start + batch]].to(device), resolution, mean, std)
            twin(x.contiguous(memory_format=conv_memory_format(device)))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return twin.eval()


def with_all_stages(encoder: ResNet, backbone: BackboneConfig) -> tuple[ResNet, int]:
    """A copy of `encoder` with all 4 stages: its own first stages and fresh later ones.

    Returns (the encoder, the number of stages it came with). The fresh stages are built and
    initialised by `build_resnet`, from the global generator (seed it first).
    """
    present = len(encoder.stages)
    if present >= FULL_STAGES:
        return copy.deepcopy(encoder), present
    in_channels = encoder.stem[0].in_channels
    full = build_resnet(backbone.depth, backbone.width, FULL_STAGES, in_channels, encoder.stem_name)
    missing, unexpected = full.load_state_dict(encoder.state_dict(), strict=False)
    fresh = tuple(f"stages.{i}." for i in range(present, FULL_STAGES))
    if unexpected or not all(key.startswith(fresh) for key in missing):
        raise ValueError(f"encoder does not match backbone {backbone}: missing {missing}, unexpected {unexpected}")
    return full.to(next(encoder.parameters()).device), present


def finetune(
    encoder: ResNet,
    backbone: BackboneConfig,
    train_images: Tensor,
    train_labels: Tensor,
    eval_sets: Mapping[str, tuple[Tensor, Tensor]],
    settings: FinetuneConfig,
    resolution: int,
    mean: Tensor,
    std: Tensor,
    num_classes: int,
    device: torch.device,
    seed: int,
    batch_size: int = FINETUNE_BATCH,
) -> FinetuneResult:
    """Fine-tune a copy of `encoder` plus a linear classifier on uint8 `train_images` at
    `resolution`, then measure top-1 on each (images, labels) of `eval_sets`.

    `backbone` (depth, width) builds the missing stages of an encoder with fewer than 4.
    `batch_size` is capped at the number of training images; the rate is scaled to it.
    """
    if len(train_images) != len(train_labels) or len(train_images) == 0:
        raise ValueError("fine-tuning needs as many labels as training images, and at least one image")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network, stages_pretrained = with_all_stages(encoder, backbone)
        classifier = nn.Linear(network.feature_dim, num_classes)
    model = nn.Sequential(network, classifier).to(device, memory_format=conv_memory_format(device))  # as the trainer's
    batch = min(batch_size, len(train_images))
    lr = scaled_lr(settings.lr, batch)
    preset = preset_for("supervised", AugmentConfig(min_scale=FINETUNE_MIN_SCALE), resolution)
    order_rng = torch.Generator().manual_seed(seed)
    view_rng = torch.Generator(device=device).manual_seed(seed + 1)
    train = _Trainer(model, train_images, train_labels, batch, preset, resolution, mean, std, device, order_rng, view_rng)

    flops = 0.0
    if stages_pretrained < FULL_STAGES:
        warm = list(network.stages[stages_pretrained:].parameters()) + list(classifier.parameters())
        warm_ids = {id(p) for p in warm}
        for p in model.parameters():
            p.requires_grad_(id(p) in warm_ids)
        flops += train.run(max(1, round(settings.epochs * STAGE_WARMUP_SHARE)), lr)
        for p in model.parameters():
            p.requires_grad_(True)
    flops += train.run(settings.epochs, lr)

    model.eval()
    top1 = {name: _top1(model, images, labels, resolution, mean, std, device) for name, (images, labels) in eval_sets.items()}
    per_image = _flops(model, 1, train_images.shape[1], resolution, backward=False)
    flops += per_image * sum(len(images) for images, _ in eval_sets.values())
    return FinetuneResult(top1=top1, flops=flops, encoder=network, classifier=classifier)


@dataclass
class _Trainer:
    """Cross-entropy epochs over the training images; its generators carry on from phase to phase."""

    model: nn.Module
    images: Tensor
    labels: Tensor
    batch: int
    preset: AugmentPreset
    resolution: int
    mean: Tensor
    std: Tensor
    device: torch.device
    order_rng: torch.Generator
    view_rng: torch.Generator

    def run(self, epochs: int, lr: float) -> float:
        """Train the parameters that require gradients for `epochs` epochs (cosine from `lr`); returns the FLOPs spent."""
        steps_per_epoch = len(self.images) // self.batch  # equal batches: the last partial one is dropped
        total = epochs * steps_per_epoch
        self.model.zero_grad(set_to_none=True)  # nothing to copy into the meta twin
        step_flops = _flops(self.model, self.batch, self.images.shape[1], self.resolution, backward=True)
        optimiser = build_optimizer(
            self.model, OptimizerConfig(name="sgd", lr=lr, weight_decay=FINETUNE_WEIGHT_DECAY, momentum=FINETUNE_MOMENTUM)
        )
        self.model.train()
        step = 0
        for _ in range(epochs):
            order = torch.randperm(len(self.images), generator=self.order_rng)
            for i in range(steps_per_epoch):
                index = order[i * self.batch : (i + 1) * self.batch]
                images = self.images[index].to(self.device, non_blocking=True)
                labels = self.labels[index].to(self.device, non_blocking=True)
                view, _ = make_views(images, self.resolution, self.preset, self.mean, self.std, self.view_rng)
                view = view.contiguous(memory_format=conv_memory_format(self.device))
                for group in optimiser.param_groups:
                    group["lr"] = warmup_cosine(step, total, 0, lr)
                with bf16_autocast(self.device):
                    loss = F.cross_entropy(self.model(view).float(), labels)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                step += 1
        if total and not math.isfinite(loss.item()):
            raise FloatingPointError(f"fine-tuning loss became {loss.item()}; lower eval.finetune.lr")
        return step_flops * total


@torch.no_grad()
def _top1(model: nn.Module, images: Tensor, labels: Tensor, resolution: int, mean: Tensor, std: Tensor, device: torch.device) -> float:
    correct = 0
    for start in range(0, len(images), EVAL_BATCH):
        x = eval_batch(images[start : start + EVAL_BATCH].to(device), resolution, mean, std).contiguous(memory_format=conv_memory_format(device))
        with bf16_autocast(device):
            predicted = model(x).argmax(1)
        correct += int((predicted.cpu() == labels[start : start + EVAL_BATCH].cpu()).sum())
    return correct / max(1, len(images))


def _flops(model: nn.Module, batch: int, channels: int, resolution: int, backward: bool) -> float:
    """FLOPs of one forward (and backward, through the parameters that require gradients) pass, on a meta copy."""
    meta = copy.deepcopy(model).to("meta")
    x = torch.empty(batch, channels, resolution, resolution, device="meta")
    with FlopCounterMode(display=False) as counter:
        if backward:
            F.cross_entropy(meta(x), torch.zeros(batch, dtype=torch.long, device="meta")).backward()
        else:
            with torch.no_grad():
                meta(x)
    return float(counter.get_total_flops())
