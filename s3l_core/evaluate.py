"""Frozen-feature evaluation: weighted cosine kNN and a linear probe.

kNN follows Wu et al. 2018 (instance discrimination) as used by MoCo/SimSiam monitors:
cosine similarity to the k nearest training features, votes weighted by exp(sim / T).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from s3l_core.backbone import bf16_autocast, conv_memory_format
from s3l_core.views import eval_batch

FEATURE_BATCH = 1024


@torch.no_grad()
def extract_features(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    resolution: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
    batch_size: int = FEATURE_BATCH,
) -> torch.Tensor:
    """L2-normalised float32 features of uint8 `images` at `resolution`, on `device`."""
    chunks = []
    autocast = bf16_autocast(device)
    layout = conv_memory_format(device)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        x = eval_batch(batch, resolution, mean, std).contiguous(memory_format=layout)
        with autocast:
            chunks.append(encoder(x).float())
    return F.normalize(torch.cat(chunks), dim=1)


@torch.no_grad()
def pixel_features(images: torch.Tensor, resolution: int, mean: torch.Tensor, std: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Raw pixels at `resolution`, flattened and L2-normalised: the no-learning floor."""
    return extract_features(lambda x: x.flatten(1), images, resolution, mean, std, device)


@torch.no_grad()
def knn_top1(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = 1024,
) -> float:
    """Top-1 accuracy of a weighted cosine kNN classifier (features must be L2-normalised)."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    k = min(k, len(train_features))
    train_labels = train_labels.to(train_features.device)
    test_labels = test_labels.to(train_features.device)
    correct = 0
    for start in range(0, len(test_features), chunk):
        sims = test_features[start : start + chunk] @ train_features.T
        top_sims, top_idx = sims.topk(k, dim=1)
        weights = (top_sims / temperature).exp()
        votes = torch.zeros(len(sims), num_classes, device=sims.device)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        correct += int((votes.argmax(1) == test_labels[start : start + chunk]).sum())
    return correct / len(test_features)


def knn_flops(num_train: int, num_test: int, dim: int) -> float:
    """Similarity matmul FLOPs of one kNN evaluation (top-k and voting are negligible)."""
    return 2.0 * num_train * num_test * dim


def linear_probe_top1(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
    steps: int = 100,
    weight_decay: float = 1e-4,
) -> tuple[dict[str, float], float]:
    """Multinomial logistic regression on standardised frozen features, fit with full-batch L-BFGS.

    Returns ({name: top-1 accuracy on each of `eval_sets` (features, labels)}, FLOPs spent
    fitting). Full-batch L-BFGS is deterministic and, on precomputed features, needs no
    learning-rate tuning.
    """
    num_classes = int(max([train_labels.max()] + [labels.max() for _, labels in eval_sets.values()])) + 1
    mean = train_features.mean(0, keepdim=True)
    std = train_features.std(0, keepdim=True).clamp_min(1e-6)
    x_train = (train_features - mean) / std
    y_train = train_labels.to(x_train.device)
    layer = torch.nn.Linear(x_train.shape[1], num_classes).to(x_train.device)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    optimiser = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=steps, history_size=10, line_search_fn="strong_wolfe")
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        optimiser.zero_grad()
        loss = F.cross_entropy(layer(x_train), y_train) + weight_decay * layer.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    accuracies = {}
    with torch.no_grad():
        for name, (features, labels) in eval_sets.items():
            predictions = layer((features - mean) / std).argmax(1)
            accuracies[name] = float((predictions == labels.to(predictions.device)).float().mean())
    # forward + backward of one linear layer over the training set per closure call
    flops = evaluations * 6.0 * len(x_train) * x_train.shape[1] * num_classes
    return accuracies, flops


@torch.no_grad()
def effective_rank(features: torch.Tensor) -> float:
    """Effective rank (Roy & Vetterli, 2007) of a feature matrix: exp of the entropy of its
    normalised singular values. Near 1 when features collapse to one direction; at most the
    feature dimension."""
    singular = torch.linalg.svdvals(features.double().cpu())
    p = singular / singular.sum().clamp_min(1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
