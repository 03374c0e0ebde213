"""ResNet encoders with a width multiplier, an optional missing last stage and a choice of stem.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016). S3L (Cao & Wu, 2021,
arXiv 2103.13559) shrinks the model by removing conv5; here that is `stages=3`. The width
multiplier is ours. The encoder ends at global average pooling: no classifier head.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Below this native image size the ImageNet stem (stride-2 7x7 conv + max-pool) would discard
# most of the image before the first residual block, so datasets of small images get a stride-1
# 3x3 stem instead (the CIFAR variant of He et al. / SimCLR). The stem is chosen from the
# DATASET, never from a trial's training resolution: an arm trained at 32 px on a 96 px dataset
# keeps the 96 px architecture, so arms differ only in the knob a study sweeps.
SMALL_STEM_BELOW = 96
STEMS = ("cifar", "imagenet")
BASE_CHANNELS = 64


def stem_for(native_size: int, choice: str = "auto") -> str:
    """The stem of a dataset whose images are `native_size` px: `choice` unless it is "auto"."""
    if choice != "auto":
        if choice not in STEMS:
            raise ValueError(f"stem {choice!r} is not one of auto, {', '.join(STEMS)}")
        return choice
    return "cifar" if native_size < SMALL_STEM_BELOW else "imagenet"


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_channels, planes, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv, as in torchvision."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


Block = type[BasicBlock] | type[Bottleneck]

LAYOUTS: dict[int, tuple[Block, tuple[int, ...]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


class ResNet(nn.Module):
    """Stem, residual stages, global average pool: (N, C, H, W) -> (N, feature_dim)."""

    def __init__(
        self,
        block: Block,
        blocks_per_stage: tuple[int, ...],
        planes: tuple[int, ...],
        in_channels: int,
        stem: str,
    ):
        super().__init__()
        stem_channels = planes[0]
        if stem == "cifar":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, stem_channels, 3, 1, 1, bias=False),
                nn.BatchNorm2d(stem_channels),
                nn.ReLU(inplace=True),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, stem_channels, 7, 2, 3, bias=False),
                nn.BatchNorm2d(stem_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        stages: list[nn.Module] = []
        channels = stem_channels
        for index, (count, width) in enumerate(zip(blocks_per_stage, planes)):
            blocks: list[nn.Module] = []
            for b in range(count):
                blocks.append(block(channels, width, 2 if (index > 0 and b == 0) else 1))
                channels = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.feature_dim: int = channels
        self.stem_name = stem
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))


def build_resnet(depth: int, width: float, stages: int, in_channels: int, stem: str) -> ResNet:
    """A ResNet-`depth` with `width` x 64 base channels, its first `stages` stages and the `stem` ("cifar" or "imagenet") stem."""
    if depth not in LAYOUTS:
        raise ValueError(f"depth {depth} is not one of {sorted(LAYOUTS)}")
    if not 1 <= stages <= 4:
        raise ValueError(f"stages {stages} must be between 1 and 4")
    if width <= 0:
        raise ValueError(f"width {width} must be > 0")
    if stem not in STEMS:
        raise ValueError(f"stem {stem!r} is not one of {', '.join(STEMS)}")
    if in_channels < 1:
        raise ValueError(f"in_channels {in_channels} must be >= 1")
    block, blocks_per_stage = LAYOUTS[depth]
    planes = tuple(max(1, round(BASE_CHANNELS * width * 2**i)) for i in range(stages))
    return ResNet(block, blocks_per_stage[:stages], planes, in_channels, stem)


def conv_memory_format(device: torch.device) -> torch.memory_format:
    """The layout the trainer and evaluation give the ResNet and its inputs: channels_last on
    CUDA, where it is faster; NCHW on the CPU, where channels_last corrupted the heap at narrow
    widths (docs/BENCHMARKS.md, section 1)."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def bf16_autocast(device: torch.device) -> torch.autocast:
    """The autocast every forward pass of the trainer, evaluation and fine-tuning runs under:
    bfloat16 on CUDA, off on the CPU (the losses switch it off for themselves)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
