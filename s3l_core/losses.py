"""Self-supervised losses as pure functions of embeddings.

Every loss L2-normalises its inputs itself and runs in float32 with autocast off: a
similarity logit divided by a temperature of 0.1-0.2 loses too much in bfloat16's 8-bit
mantissa, and these ops are a negligible share of a step.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = TypeVar("LossFn", bound=Callable[..., Tensor])


def _full_precision(loss: LossFn) -> LossFn:
    @functools.wraps(loss)
    def wrapper(*args: object, **kwargs: object) -> Tensor:
        device = next(a for a in args if isinstance(a, Tensor)).device
        # meta (FLOP counting) has no autocast; cpu/cuda switch it off for the loss
        with torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda") else contextlib.nullcontext():
            return loss(*(a.float() if isinstance(a, Tensor) else a for a in args), **kwargs)

    return wrapper  # type: ignore[return-value]


@_full_precision
def info_nce(query: Tensor, key: Tensor, temperature: float) -> Tensor:
    """InfoNCE (van den Oord et al., 2018, arXiv 1807.03748, eq. 4) with in-batch negatives.

    `key[i]` is the positive of `query[i]`; the other N-1 keys are its negatives.
    """
    logits = F.normalize(query, dim=1) @ F.normalize(key, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(query), device=query.device))


@_full_precision
def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent, SimCLR's loss (Chen et al., 2020, arXiv 2002.05709, eq. 1), averaged over all 2N anchors.

    Each embedding's positive is the other view of the same image; its negatives are the
    other 2N-2 embeddings of the batch.
    """
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    positives = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits, positives)


@_full_precision
def moco_infonce(query: Tensor, key: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """MoCo's InfoNCE (He et al., 2020, arXiv 1911.05722, eq. 1; MoCo v2, arXiv 2003.04297).

    `key[i]` (from the momentum encoder) is the positive of `query[i]`; the negatives are the
    K rows of `queue` (K, D), keys of earlier batches. No gradient flows into keys or queue.
    """
    q = F.normalize(query, dim=1)
    k = F.normalize(key.detach(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    negative = q @ F.normalize(queue.detach(), dim=1).T
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


@_full_precision
def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """BYOL's regression loss 2 - 2 cos(p, z) (Grill et al., 2020, arXiv 2006.07733, eq. 2), batch mean.

    The target projection gets no gradient.
    """
    return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=1)).mean()


@_full_precision
def simsiam_loss(prediction: Tensor, projection: Tensor) -> Tensor:
    """SimSiam's negative cosine similarity D(p, stopgrad(z)) (Chen & He, 2021, arXiv 2011.10566, eq. 1, 3), batch mean."""
    return -F.cosine_similarity(prediction, projection.detach(), dim=1).mean()
