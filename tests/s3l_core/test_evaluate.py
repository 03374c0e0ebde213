"""kNN and linear probe on hand-made features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from s3l_core.evaluate import knn_flops, knn_top1, linear_probe_top1


def clusters(n_per_class: int, classes: int, dim: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    features = centres[labels] + noise * torch.randn(len(labels), dim, generator=generator)
    return features, labels


def test_knn_separates_clusters_and_fails_on_shuffled_labels():
    train, train_labels = clusters(50, 4, 16, 0.3, seed=1)
    test, test_labels = clusters(20, 4, 16, 0.3, seed=2)
    train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    assert knn_top1(train, train_labels, test, test_labels, k=10) > 0.95
    shuffled = train_labels[torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(3))]
    assert knn_top1(train, shuffled, test, test_labels, k=10) < 0.6
    assert knn_top1(train, train_labels, test, test_labels, k=10_000) > 0.9  # k larger than the bank is clipped


def test_knn_flops_count_the_similarity_matmul():
    assert knn_flops(1000, 10, 64) == 2 * 1000 * 10 * 64


def test_linear_probe_fits_linearly_separable_features():
    train, train_labels = clusters(50, 3, 8, 0.5, seed=4)
    test, test_labels = clusters(20, 3, 8, 0.5, seed=5)
    accuracy, flops = linear_probe_top1(train, train_labels, test, test_labels)
    assert accuracy > 0.9 and flops > 0
    noise = torch.randn(150, 8, generator=torch.Generator().manual_seed(6))
    chance, _ = linear_probe_top1(noise, train_labels, test, test_labels)
    assert chance < 0.6
