"""Which images pre-train and which evaluate: the validation split is fixed per dataset and
never pre-trained on; the test split is only evaluated."""

import dataclasses

import torch

from s3l_core.data import load_dataset, validation_split
from s3l_core.image_dataset import ImageDataset
from s3l_core.splits import UNLABELLED, trial_splits


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(row.flatten().tolist()) for row in images}


def test_validation_split_is_stratified_and_the_same_for_every_call() -> None:
    labels = torch.arange(10).repeat_interleave(100)
    train, val = validation_split(labels, 0.1)
    again_train, again_val = validation_split(labels, 0.1)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert torch.bincount(labels[val]).tolist() == [10] * 10
    assert set(train.tolist()).isdisjoint(val.tolist()) and len(train) + len(val) == 1000


def test_seeds_and_fractions_share_one_validation_set_that_is_never_pre_trained_on() -> None:
    data = load_dataset("fashion-mnist-sample")
    first = trial_splits(data, 0.1, 1.0, seed=0)
    other = trial_splits(data, 0.1, 0.3, seed=5)
    assert torch.equal(first.val_images, other.val_images) and torch.equal(first.val_labels, other.val_labels)
    assert len(first.val_labels) == 1000 and len(first.bank_labels) == 9000
    val_rows = _rows(first.val_images)
    assert val_rows.isdisjoint(_rows(first.pretrain_images))
    assert val_rows.isdisjoint(_rows(other.pretrain_images))
    assert _rows(other.pretrain_images) <= _rows(first.bank_images)
    assert other.pretrain_size == 2700 and other.full_pool_size == 9000
    assert torch.equal(first.test_images, data.test_images)


def test_unlabelled_images_join_pre_training_only() -> None:
    data = load_dataset("digits")
    extra = torch.full((50, *data.train_images.shape[1:]), 7, dtype=torch.uint8)
    with_unlabelled = dataclasses.replace(data, unlabeled_images=extra)
    splits = trial_splits(with_unlabelled, 0.1, 0.5, seed=0)
    assert (splits.pretrain_labels == UNLABELLED).sum() == 25
    assert splits.full_pool_size == len(splits.bank_labels) + 50
    assert len(splits.bank_labels) + len(splits.val_labels) == len(data.train_labels)  # evaluation stays labelled
    supervised = trial_splits(with_unlabelled, 0.1, 0.5, seed=0, labelled_only=True)
    assert (supervised.pretrain_labels != UNLABELLED).all()


def test_image_dataset_refuses_unlabelled_images_of_another_shape() -> None:
    data = load_dataset("digits")
    try:
        ImageDataset(data.name, data.train_images, data.train_labels, data.test_images, data.test_labels, data.classes,
                     unlabeled_images=torch.zeros(3, 1, 9, 9, dtype=torch.uint8))
    except ValueError as error:
        assert "unlabeled" in str(error)
    else:
        raise AssertionError("accepted unlabelled images of another shape")
