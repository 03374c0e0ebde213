from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from s3l_core.losses import byol_loss, info_nce, moco_infonce, nt_xent, simsiam_loss

N, D = 32, 16
QUEUE = torch.nn.functional.normalize(torch.randn(64, D, generator=torch.Generator().manual_seed(9)), dim=1)

# Each loss as a function of two embedding batches whose rows i are meant to match.
PAIR_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "info_nce": lambda a, b: info_nce(a, b, 0.2),
    "nt_xent": lambda a, b: nt_xent(a, b, 0.2),
    "moco_infonce": lambda a, b: moco_infonce(a, b, QUEUE, 0.2),
    "byol": byol_loss,
    "simsiam": simsiam_loss,
}


def pairs(seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(N, D, generator=g)
    return a, a + 0.1 * torch.randn(N, D, generator=g)


@pytest.mark.parametrize("name", list(PAIR_LOSSES))
def test_matched_pairs_score_lower_than_shuffled(name: str) -> None:
    a, b = pairs()
    shuffled = b[torch.randperm(N, generator=torch.Generator().manual_seed(1))]
    loss = PAIR_LOSSES[name]
    assert loss(a, b) < loss(a, shuffled)


@pytest.mark.parametrize("name", list(PAIR_LOSSES))
def test_loss_decreases_under_sgd(name: str) -> None:
    # A tiny learnable problem: embed two noisy views of the same points with one shared linear map.
    torch.manual_seed(0)
    points = torch.randn(N, 8)
    view1, view2 = points + 0.3 * torch.randn(N, 8), points + 0.3 * torch.randn(N, 8)
    embed, predict = nn.Linear(8, D), nn.Linear(D, D)
    optimiser = torch.optim.SGD([*embed.parameters(), *predict.parameters()], lr=0.5)
    loss_fn = PAIR_LOSSES[name]
    asymmetric = name in ("byol", "simsiam")
    history = []
    for _ in range(20):
        z1, z2 = embed(view1), embed(view2)
        loss = loss_fn(predict(z1), z2) if asymmetric else loss_fn(z1, z2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(loss.item())
    assert history[-1] < history[0] - 0.05


def test_nt_xent_with_one_pair_has_no_negatives() -> None:
    a, b = torch.randn(1, D), torch.randn(1, D)
    assert nt_xent(a, b, 0.1).item() == pytest.approx(0.0, abs=1e-6)


def test_nt_xent_matches_the_definition() -> None:
    a, b = pairs()
    t = 0.5
    z = torch.nn.functional.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / t
    total = 0.0
    for i in range(2 * N):
        positive = (i + N) % (2 * N)
        others = torch.cat([sim[i, :i], sim[i, i + 1 :]])
        total += -(sim[i, positive] - torch.logsumexp(others, 0))
    torch.testing.assert_close(nt_xent(a, b, t), total / (2 * N))


def test_moco_infonce_known_value() -> None:
    q = torch.nn.functional.normalize(torch.randn(4, D), dim=1)
    # The positive is the query itself and every queue entry is orthogonal: the loss is the known log-sum.
    queue = torch.zeros(3, D)
    queue[:, 0] = 1.0
    q[:, 0] = 0
    q = torch.nn.functional.normalize(q, dim=1)
    expected = -torch.log_softmax(torch.tensor([1.0, 0.0, 0.0, 0.0]) / 0.2, 0)[0]
    torch.testing.assert_close(moco_infonce(q, q, queue, 0.2), expected)


def test_regression_losses_at_their_optimum() -> None:
    p = torch.randn(N, D)
    assert byol_loss(p, 3 * p).item() == pytest.approx(0.0, abs=1e-5)
    assert simsiam_loss(p, 3 * p).item() == pytest.approx(-1.0, abs=1e-5)


@pytest.mark.parametrize("loss_fn", [byol_loss, simsiam_loss])
def test_stop_gradient_on_the_target(loss_fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    p, z = torch.randn(N, D, requires_grad=True), torch.randn(N, D, requires_grad=True)
    loss_fn(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_moco_infonce_no_gradient_into_keys_or_queue() -> None:
    q, k = torch.randn(N, D, requires_grad=True), torch.randn(N, D, requires_grad=True)
    queue = QUEUE.clone().requires_grad_(True)
    moco_infonce(q, k, queue, 0.2).backward()
    assert q.grad is not None and k.grad is None and queue.grad is None


def test_losses_run_in_float32_under_autocast() -> None:
    a, b = pairs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent(a.bfloat16(), b.bfloat16(), 0.2)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, nt_xent(a.bfloat16().float(), b.bfloat16().float(), 0.2))


def test_info_nce_matches_the_definition_at_its_temperature() -> None:
    a, b = pairs()
    for t in (0.1, 0.5):
        logits = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T / t
        expected = -(logits.diag() - torch.logsumexp(logits, dim=1)).mean()
        torch.testing.assert_close(info_nce(a, b, t), expected)


@pytest.mark.parametrize("name", ["info_nce", "nt_xent", "moco_infonce"])
def test_contrastive_losses_ignore_the_scale_of_embeddings_queue_included(name: str) -> None:
    """Cosine similarities: scaling queries, keys or the queue changes nothing (a queue of
    unnormalised keys would weight negatives by their norm)."""
    a, b = pairs()
    loss = PAIR_LOSSES[name]
    torch.testing.assert_close(loss(3 * a, 0.5 * b), loss(a, b))
    if name == "moco_infonce":
        torch.testing.assert_close(moco_infonce(a, b, 5 * QUEUE, 0.2), moco_infonce(a, b, QUEUE, 0.2))
