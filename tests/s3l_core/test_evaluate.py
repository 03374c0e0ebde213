"""kNN and linear probe on hand-made features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from s3l_core.evaluate import effective_rank, knn_flops, knn_top1, linear_probe_top1


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
    val, val_labels = clusters(10, 3, 8, 0.5, seed=7)
    scores, flops = linear_probe_top1(train, train_labels, {"val": (val, val_labels), "test": (test, test_labels)})
    assert scores["test"] > 0.9 and scores["val"] > 0.9 and flops > 0
    noise = torch.randn(150, 8, generator=torch.Generator().manual_seed(6))
    chance, _ = linear_probe_top1(noise, train_labels, {"test": (test, test_labels)})
    assert chance["test"] < 0.6


def test_knn_vote_depends_on_k_and_temperature():
    """One query: its single nearest neighbour is class 0; three slightly farther ones are class 1.
    k=1 says 0; k=4 with a soft temperature says 1 (three votes); a sharp temperature lets the
    nearest dominate again."""
    query = F.normalize(torch.tensor([[1.0, 0.0]]), dim=1)
    bank = F.normalize(torch.tensor([[1.0, 0.05], [1.0, 0.3], [1.0, -0.3], [1.0, 0.32], [-1.0, 0.0]]), dim=1)
    labels = torch.tensor([0, 1, 1, 1, 0])
    truth0, truth1 = torch.tensor([0]), torch.tensor([1])
    assert knn_top1(bank, labels, query, truth0, k=1, temperature=0.1) == 1.0
    assert knn_top1(bank, labels, query, truth1, k=4, temperature=0.1) == 1.0
    assert knn_top1(bank, labels, query, truth0, k=4, temperature=0.005) == 1.0


def test_effective_rank_sees_collapse():
    generator = torch.Generator().manual_seed(0)
    spread = F.normalize(torch.randn(500, 32, generator=generator), dim=1)
    collapsed = F.normalize(torch.randn(1, 32, generator=generator).repeat(500, 1) + 1e-3 * torch.randn(500, 32, generator=generator), dim=1)
    assert effective_rank(spread) > 25
    assert effective_rank(collapsed) < 2


def test_extracted_features_are_unit_vectors_whatever_the_encoders_scale():
    """knn_top1 and the feature bank assume cosine similarity: features must be L2-normalised."""
    from s3l_core.evaluate import extract_features, pixel_features

    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std, cpu = torch.tensor([0.5]), torch.tensor([0.25]), torch.device("cpu")
    for features in (extract_features(lambda x: 7.0 * x.flatten(1), images, 8, mean, std, cpu, batch_size=3),
                     pixel_features(images, 8, mean, std, cpu)):
        assert features.shape == (10, 64) and features.dtype == torch.float32
        torch.testing.assert_close(features.norm(dim=1), torch.ones(10))
