"""`ImageDataset`, what every loader returns: whole train and test splits as uint8 NCHW
tensors held in memory, checked on construction; and `DatasetError`, what every loader raises.

Its own module so that `s3l_core/data.py` (the built-in datasets) and
`s3l_core/imagefolder.py` (folders of images) share them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


class DatasetError(ValueError):
    """A dataset that cannot be loaded; the message names it, where we looked, and how to get it."""


@dataclass(frozen=True, eq=False)
class ImageDataset:
    name: str
    train_images: torch.Tensor = field(repr=False)  # uint8 (N, C, H, W), contiguous, CPU
    train_labels: torch.Tensor = field(repr=False)  # int64 (N,)
    test_images: torch.Tensor = field(repr=False)  # uint8 (M, C, H, W)
    test_labels: torch.Tensor = field(repr=False)  # int64 (M,)
    classes: tuple[str, ...]
    # Unlabelled images that only pre-training sees (STL-10's 100k), same shape as train.
    unlabeled_images: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images: torch.Tensor = getattr(self, f"{split}_images")
            labels: torch.Tensor = getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[2] != images.shape[3]:
                raise ValueError(
                    f"{self.name}: {split}_images must be uint8 (N, C, S, S), "
                    f"got {images.dtype} {tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                raise ValueError(
                    f"{self.name}: {split}_labels must be int64 ({images.shape[0]},), "
                    f"got {labels.dtype} {tuple(labels.shape)}"
                )
        if self.unlabeled_images is not None and (
            self.unlabeled_images.dtype != torch.uint8 or self.unlabeled_images.shape[1:] != self.train_images.shape[1:]
        ):
            raise ValueError(f"{self.name}: unlabeled_images must be uint8 of the train images' shape")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(
                f"{self.name}: train and test images differ in shape: "
                f"{tuple(self.train_images.shape[1:])} vs {tuple(self.test_images.shape[1:])}"
            )

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def native_size(self) -> int:
        return int(self.train_images.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.classes)
