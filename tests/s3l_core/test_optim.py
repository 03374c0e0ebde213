import pytest
import torch
from torch import nn

from s3l_core.backbone import build_resnet
from s3l_core.config import OptimizerConfig
from s3l_core.methods import frozen_copy
from s3l_core.optim import LARS, build_optimizer, parameter_groups, scaled_lr

LR, WEIGHT_DECAY = 0.1, 0.1


class Net(nn.Module):
    """A ResNet-10 with a linear head and a frozen momentum twin, as the methods have."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = build_resnet(10, 0.125, 4, 1, "cifar")
        self.head = nn.Linear(self.encoder.feature_dim, 4)
        self.target = frozen_copy(self.encoder)


def exempt(name: str, p: torch.Tensor) -> bool:
    return p.ndim == 1  # BN weights and biases, linear biases


@pytest.mark.parametrize("name", ["sgd", "lars"])
def test_a_zero_gradient_step_decays_weights_but_not_bn_or_biases(name: str) -> None:
    net = Net()
    net.encoder.stem[1].weight.data.fill_(2.0)  # a BN weight far from anything decay could leave unchanged
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimiser = build_optimizer(net, OptimizerConfig(name=name, lr=LR, weight_decay=WEIGHT_DECAY, momentum=0.9))
    for p in net.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimiser.step()
    after = dict(net.named_parameters())
    checked_exempt = checked_decayed = 0
    for n, p in after.items():
        if n.startswith("target."):
            assert torch.equal(p, before[n]), n  # frozen: not optimised
        elif exempt(n, p):
            assert torch.equal(p, before[n]), n
            checked_exempt += 1
        else:
            torch.testing.assert_close(p, before[n] * (1 - LR * WEIGHT_DECAY), msg=n)
            checked_decayed += 1
    assert checked_exempt > 10 and checked_decayed > 10


def test_groups_leave_out_frozen_parameters_and_share_one_rate() -> None:
    net = Net()
    groups = parameter_groups(net, WEIGHT_DECAY)
    grouped = {id(p) for g in groups for p in g["params"]}
    assert grouped == {id(p) for p in net.parameters() if p.requires_grad}
    assert not any(id(p) in grouped for p in net.target.parameters())
    assert [g["weight_decay"] for g in groups] == [WEIGHT_DECAY, 0.0]
    for name in ("sgd", "lars"):
        optimiser = build_optimizer(net, OptimizerConfig(name=name, lr=0.3, weight_decay=1e-4))
        assert {g["lr"] for g in optimiser.param_groups} == {0.3}
    assert isinstance(build_optimizer(net, OptimizerConfig(name="lars", lr=1.0, weight_decay=0.0)), LARS)
    with pytest.raises(ValueError, match="not resolved"):
        build_optimizer(net, OptimizerConfig())


def lars_step(lr: float, clip: bool, weight_decay: float = 0.1, momentum: float = 0.0, steps: int = 1) -> torch.Tensor:
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    optimiser = LARS([w], lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=0.02, clip=clip)
    for _ in range(steps):
        w.grad = torch.tensor([[0.6, 0.8]])  # |g| = 1
        optimiser.step()
    return w.detach()


def test_lars_trust_ratio_on_a_known_tensor() -> None:
    # ratio = 0.02 * 5 / (1 + 0.1 * 5) = 1/15; update = ratio * (g + 0.1 w) = ratio * [0.9, 1.2]
    ratio = 0.02 * 5 / 1.5
    torch.testing.assert_close(lars_step(lr=0.1, clip=False), torch.tensor([[3 - 0.1 * ratio * 0.9, 4 - 0.1 * ratio * 1.2]]))
    # Clipped (LARC): the effective rate is min(ratio, lr): ratio here, 0.01 below.
    torch.testing.assert_close(lars_step(lr=0.1, clip=True), torch.tensor([[3 - ratio * 0.9, 4 - ratio * 1.2]]))
    torch.testing.assert_close(lars_step(lr=0.01, clip=True), torch.tensor([[3 - 0.01 * 0.9, 4 - 0.01 * 1.2]]))
    # Momentum accumulates the adapted updates as PyTorch's SGD does (the second step's ratio uses the moved w).
    w1 = lars_step(lr=0.1, clip=False)
    r2 = 0.02 * w1.norm() / (1 + 0.1 * w1.norm())
    u1 = ratio * torch.tensor([[0.9, 1.2]])
    u2 = r2 * (torch.tensor([[0.6, 0.8]]) + 0.1 * w1)
    torch.testing.assert_close(lars_step(lr=0.1, clip=False, momentum=0.9, steps=2), w1 - 0.1 * (0.9 * u1 + u2))


def test_lars_leaves_bn_and_biases_unadapted() -> None:
    """An exempt group is plain SGD: w - lr * g, whatever the norms."""
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    optimiser = build_optimizer(net, OptimizerConfig(name="lars", lr=0.5, weight_decay=0.1, momentum=0.0))
    bias, bn_weight = net[0].bias, net[1].weight
    start = [bias.detach().clone(), bn_weight.detach().clone()]
    bias.grad, bn_weight.grad = torch.full_like(bias, 0.2), torch.full_like(bn_weight, -0.4)
    net[0].weight.grad = torch.ones_like(net[0].weight)
    optimiser.step()
    torch.testing.assert_close(bias.detach(), start[0] - 0.5 * 0.2)
    torch.testing.assert_close(bn_weight.detach(), start[1] + 0.5 * 0.4)


def test_learning_rate_scales_linearly_with_the_batch() -> None:
    assert scaled_lr(0.3, 256) == pytest.approx(0.3)
    assert scaled_lr(0.3, 512) == pytest.approx(0.6)
    assert scaled_lr(0.03, 100) == pytest.approx(0.03 * 100 / 256)
    with pytest.raises(ValueError):
        scaled_lr(0.1, 0)
