"""The peer-style input pipeline: per-sample torchvision v2 SimCLR transforms in a DataLoader.

What most SSL code does (SimCLR, lightly, solo-learn): each worker process draws one image
at a time and runs RandomResizedCrop, flip, colour jitter, grayscale (and blur) on it.
The images are uint8 CHW tensors, v2's fastest path (no PIL decode), so the figure is an
upper bound for such a pipeline. The recipe matches s3l_core's SimCLR preset
(`s3l_core.views.PRESETS['simclr']`), blur sigma scaled with the resolution as there.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from s3l_core.config import AugmentConfig
from s3l_core.views import BLUR_SIGMA, PRESETS, preset_for


def simclr_transform(resolution: int, mean: list[float], std: list[float], blur: bool | None = None) -> v2.Compose:
    """torchvision's per-image version of the simclr preset; `blur` None: as the preset at this size."""
    preset = PRESETS["simclr"]
    if blur is None:
        blur = any(preset_for("simclr", AugmentConfig(), resolution).blur_prob)
    s = preset.color_jitter
    ops: list[torch.nn.Module] = [
        v2.RandomResizedCrop(resolution, scale=(preset.min_scale, preset.max_scale), ratio=preset.ratio, antialias=True),
        v2.RandomHorizontalFlip(p=preset.flip),
        v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=preset.jitter_prob),
        v2.RandomGrayscale(p=preset.grayscale_prob),
    ]
    if blur:
        lo, hi = BLUR_SIGMA  # in pixels of the view, as s3l_core.views
        kernel = 2 * max(1, math.ceil(3 * hi)) + 1
        ops.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(lo, hi))], p=preset.blur_prob[0]))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


class TwoViewDataset(Dataset):
    """Two independently augmented views of image `i % len(images)`, with its label."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: v2.Compose, length: int):
        self.images, self.labels, self.transform, self.length = images, labels, transform, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image = self.images[i % len(self.images)]
        return self.transform(image), self.transform(image), self.labels[i % len(self.labels)]


def peer_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    resolution: int,
    mean: list[float],
    std: list[float],
    batch: int,
    batches: int,
    workers: int,
    pin_memory: bool,
    blur: bool | None = None,
) -> DataLoader:
    """A shuffled, drop-last DataLoader yielding `batches` batches of (view1, view2, labels)."""
    dataset = TwoViewDataset(images.cpu(), labels.cpu(), simclr_transform(resolution, mean, std, blur), batch * batches)
    extra = {"persistent_workers": True, "prefetch_factor": 4} if workers > 0 else {}
    return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=pin_memory, drop_last=True, **extra)
