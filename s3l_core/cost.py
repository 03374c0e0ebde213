"""FLOPs of training steps and feature passes, counted with `torch.utils.flop_counter`.

Counting runs the model on the `meta` device: shapes propagate and every matmul and
convolution is counted, but nothing is computed, so counting a full-width ResNet-50
step at 224 px costs milliseconds.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from s3l_core.backbone import build_resnet
from s3l_core.config import BackboneConfig, MethodConfig
from s3l_core.methods import build_method


@lru_cache(maxsize=256)
def train_step_flops(
    method: str,
    backbone: BackboneConfig,
    params: MethodConfig,
    in_channels: int,
    num_classes: int,
    stem: str,
    resolution: int,
    batch_size: int,
    num_train_images: int | None = None,
) -> float:
    """FLOPs of one optimisation step (forward and backward through both views). `num_train_images`,
    the pre-training pool, caps MoCo's queue as in training (None: uncapped)."""
    with torch.device("meta"):
        encoder = build_resnet(backbone.depth, backbone.width, backbone.stages, in_channels, stem)
        model = build_method(method, encoder, params, num_classes, num_train_images=num_train_images)
        views = [torch.empty(batch_size, in_channels, resolution, resolution) for _ in range(2)]
        labels = torch.zeros(batch_size, dtype=torch.long)
    model.train()
    with FlopCounterMode(display=False) as counter:
        model.loss(views[0], views[1], labels).backward()
    return float(counter.get_total_flops())


@lru_cache(maxsize=256)
def forward_flops_per_image(backbone: BackboneConfig, in_channels: int, stem: str, resolution: int) -> float:
    """FLOPs of one encoder forward pass for one image (evaluation features)."""
    with torch.device("meta"):
        encoder = build_resnet(backbone.depth, backbone.width, backbone.stages, in_channels, stem)
        x = torch.empty(1, in_channels, resolution, resolution)
    encoder.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        encoder(x)
    return float(counter.get_total_flops())
