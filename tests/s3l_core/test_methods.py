import pytest
import torch
from torch import Tensor

from s3l_core.backbone import build_resnet
from s3l_core.config import AugmentConfig, MethodConfig
from s3l_core.methods import BYOL, METHODS, MoCoV2, SplitBatchNorm, SSLMethod, build_method, mlp
from s3l_core.views import make_views, preset_for

N, RES, CLASSES = 16, 12, 4
PARAMS = MethodConfig(queue_size=40, hidden_dim=32, projection_dim=16)
MEAN, STD = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25])


def build(name: str, seed: int = 0, params: MethodConfig = PARAMS) -> SSLMethod:
    torch.manual_seed(seed)
    return build_method(name, build_resnet(18, 0.125, 4, 3, RES), params, CLASSES)


def batch(name: str, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (N, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, CLASSES, (N,), generator=g)
    v1, v2 = make_views(images, RES, preset_for(name, AugmentConfig()), MEAN, STD, g)
    return v1, v2, labels


def optimiser(method: SSLMethod) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.05, momentum=0.9)


def train(method: SSLMethod, steps: int, fixed_batch: bool) -> list[float]:
    opt = optimiser(method)
    losses = []
    for step in range(steps):
        v1, v2, labels = batch(method_name(method), seed=0 if fixed_batch else step)
        loss = method.loss(v1, v2, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step((step + 1) / steps)
        losses.append(loss.item())
    return losses


def method_name(method: SSLMethod) -> str:
    return next(name for name, cls in METHODS.items() if isinstance(method, cls))


@pytest.mark.parametrize("name", list(METHODS))
def test_trains_with_finite_loss(name: str) -> None:
    method = build(name)
    losses = train(method, 3, fixed_batch=False)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert method.encoder.feature_dim == 64


@pytest.mark.parametrize("name", ["simclr", "supervised", "moco_v2", "byol"])
def test_loss_decreases_on_a_fixed_batch(name: str) -> None:
    losses = train(build(name), 8, fixed_batch=True)
    assert losses[-1] < 0.9 * losses[0]


def test_moco_queue_changes_after_a_step() -> None:
    method = build("moco_v2")
    assert isinstance(method, MoCoV2)
    before = method.queue.clone()
    train(method, 1, fixed_batch=True)
    changed = (method.queue != before).any(dim=1)
    assert changed.sum() == 2 * N  # both views' keys are enqueued
    assert method.queue_ptr.item() == 2 * N
    torch.testing.assert_close(method.queue.norm(dim=1), torch.ones(PARAMS.queue_size))


def test_moco_queue_smaller_than_batch_keeps_newest_keys() -> None:
    method = build("moco_v2", params=MethodConfig(queue_size=5, hidden_dim=32, projection_dim=16))
    v1, v2, labels = batch("moco_v2")
    method.loss(v1, v2, labels)
    with torch.no_grad():
        keys = torch.nn.functional.normalize(method.key_projector(method.key_encoder(torch.cat([v1, v2]))), dim=1)
    torch.testing.assert_close(method.queue, keys[-5:])
    assert method.queue_ptr.item() == 0


@pytest.mark.parametrize("name, online, target", [("moco_v2", "encoder", "key_encoder"), ("byol", "encoder", "target_encoder")])
def test_target_moves_by_ema_and_gets_no_gradient(name: str, online: str, target: str) -> None:
    method = build(name)
    target_net, online_net = getattr(method, target), getattr(method, online)
    assert not any(p.requires_grad for p in target_net.parameters())
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    assert not any(id(p) in trainable for p in target_net.parameters())
    start = [p.clone() for p in target_net.parameters()]
    torch.testing.assert_close(start, [p.detach() for p in online_net.parameters()])

    v1, v2, labels = batch(name)
    opt = optimiser(method)
    method.loss(v1, v2, labels).backward()
    assert all(p.grad is None for p in target_net.parameters())
    opt.step()
    momentum = PARAMS.ema if name == "moco_v2" else method.momentum(0.5)
    method.after_step(0.5)
    for p_target, p_start, p_online in zip(target_net.parameters(), start, online_net.parameters()):
        torch.testing.assert_close(p_target, momentum * p_start + (1 - momentum) * p_online.detach())
    assert any(not torch.equal(a, b) for a, b in zip(target_net.parameters(), start))


def test_byol_momentum_schedule() -> None:
    method = build("byol")
    assert isinstance(method, BYOL)
    assert method.momentum(0.0) == pytest.approx(PARAMS.ema)
    assert method.momentum(1.0) == pytest.approx(1.0)
    assert PARAMS.ema < method.momentum(0.5) < 1.0


@pytest.mark.parametrize("name", ["moco_v2", "byol"])
def test_state_dict_round_trip_restores_queue_and_target(name: str) -> None:
    trained = build(name, seed=0)
    train(trained, 2, fixed_batch=False)
    fresh = build(name, seed=1)
    fresh.load_state_dict(trained.state_dict())
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    keys = trained.state_dict().keys()
    if name == "moco_v2":
        assert {"queue", "queue_ptr"} <= keys and any(k.startswith("key_encoder.") for k in keys)
    else:
        assert any(k.startswith("target_encoder.") for k in keys)
    # The restored method continues exactly like the original.
    v1, v2, labels = batch(name, seed=5)
    torch.testing.assert_close(fresh.loss(v1, v2, labels), trained.loss(v1, v2, labels))


def test_moco_key_network_normalises_in_groups() -> None:
    method = build("moco_v2")
    split = [m for m in method.key_encoder.modules() if isinstance(m, SplitBatchNorm)]
    assert split and not any(isinstance(m, SplitBatchNorm) for m in method.encoder.modules())
    bn = split[0]
    x = torch.randn(16, bn.num_features, 3, 3)
    out = bn(x)
    # Interleaved groups of 8: each group's output has zero mean per channel.
    grouped = out.unflatten(0, (2, 8))
    torch.testing.assert_close(grouped.mean(dim=(0, 3, 4)), torch.zeros(8, bn.num_features), atol=1e-5, rtol=0)
    assert bn(torch.randn(6, bn.num_features)).shape == (6, bn.num_features)  # 3 groups of 2


def test_simsiam_and_simclr_heads() -> None:
    simsiam = build("simsiam")
    assert isinstance(simsiam.projector[-1], torch.nn.BatchNorm1d) and not simsiam.projector[-1].affine
    assert sum(isinstance(m, torch.nn.Linear) for m in simsiam.projector) == 3
    assert simsiam.predictor[0].out_features == PARAMS.projection_dim // 4
    layers = mlp(8, 16, 4, num_layers=1)
    assert len(layers) == 1 and layers[0].out_features == 4


def test_supervised_needs_classes_and_unknown_method_fails() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        build_method("supervised", build_resnet(10, 0.125, 4, 3, RES), PARAMS, 0)
    with pytest.raises(ValueError, match="unknown method"):
        build_method("dino", build_resnet(10, 0.125, 4, 3, RES), PARAMS, 10)


def test_methods_use_labels_only_when_supervised() -> None:
    for name in ("simclr", "byol"):
        method = build(name)
        v1, v2, labels = batch(name)
        torch.testing.assert_close(method.loss(v1, v2, labels), method.loss(v1, v2, labels.flip(0)))
