"""Which images a trial pre-trains on and which it is evaluated on.

- validation: a stratified `eval.val_fraction` of the labelled training split, the same for
  every seed and arm (`s3l_core.data.validation_split`); never pre-trained on. Monitoring,
  schedulers and searchers see only it.
- bank: the rest of the labelled training split: the kNN memory bank and the set linear
  probes and fine-tuning are fitted on.
- pre-training pool: the bank plus any unlabelled images (STL-10's 100k); a trial pre-trains
  on its `data_fraction` of it (stratified over the labelled part, seeded).
- test: evaluated once, at the end of a trial; what the report states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from s3l_core.data import stratified_subset, validation_split
from s3l_core.image_dataset import ImageDataset

UNLABELLED = -1


@dataclass(frozen=True, eq=False)
class TrialSplits:
    pretrain_images: torch.Tensor = field(repr=False)  # uint8 (P, C, S, S), CPU
    pretrain_labels: torch.Tensor = field(repr=False)  # int64 (P,), UNLABELLED for unlabelled images
    bank_images: torch.Tensor = field(repr=False)
    bank_labels: torch.Tensor = field(repr=False)
    val_images: torch.Tensor = field(repr=False)
    val_labels: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    full_pool_size: int  # pre-training images at data_fraction 1

    @property
    def pretrain_size(self) -> int:
        return len(self.pretrain_images)


def trial_splits(data: ImageDataset, val_fraction: float, data_fraction: float, seed: int, labelled_only: bool = False) -> TrialSplits:
    """The splits of one trial; `labelled_only` (the supervised reference) leaves unlabelled images out."""
    bank_index, val_index = validation_split(data.train_labels, val_fraction)
    bank_labels = data.train_labels[bank_index]
    chosen = bank_index[stratified_subset(bank_labels, data_fraction, seed)]
    images, labels = [data.train_images[chosen]], [data.train_labels[chosen]]
    full_pool = len(bank_index)
    unlabelled = None if labelled_only else data.unlabeled_images
    if unlabelled is not None and len(unlabelled):
        full_pool += len(unlabelled)
        count = max(1, round(data_fraction * len(unlabelled)))
        generator = torch.Generator().manual_seed(seed)
        pick = torch.sort(torch.randperm(len(unlabelled), generator=generator)[:count]).values
        images.append(unlabelled[pick])
        labels.append(torch.full((count,), UNLABELLED, dtype=torch.int64))
    return TrialSplits(
        pretrain_images=torch.cat(images) if len(images) > 1 else images[0],
        pretrain_labels=torch.cat(labels) if len(labels) > 1 else labels[0],
        bank_images=data.train_images[bank_index],
        bank_labels=bank_labels,
        val_images=data.train_images[val_index],
        val_labels=data.train_labels[val_index],
        test_images=data.test_images,
        test_labels=data.test_labels,
        full_pool_size=full_pool,
    )
