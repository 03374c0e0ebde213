import pytest
import torch
from torch import Tensor

from s3l_core.backbone import build_resnet
from s3l_core.config import AugmentConfig, MethodConfig, TrialConfig
from s3l_core.methods import BYOL, METHODS, MoCoV2, SplitBatchNorm, SSLMethod, build_method, frozen_copy, mlp
from s3l_core.views import make_views, preset_for

N, RES, CLASSES = 16, 12, 4
PARAMS = MethodConfig(queue_size=40, hidden_dim=32, projection_dim=16, predictor_hidden_dim=8)
MEAN, STD = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25])


def build(name: str, seed: int = 0, params: MethodConfig = PARAMS, stem: str = "cifar", num_train_images: int | None = None) -> SSLMethod:
    torch.manual_seed(seed)
    return build_method(name, build_resnet(18, 0.125, 4, 3, stem), params, CLASSES, num_train_images)


def batch(name: str, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (N, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, CLASSES, (N,), generator=g)
    v1, v2 = make_views(images, RES, preset_for(name, AugmentConfig(), RES), MEAN, STD, g)
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
    method = build(name)
    if isinstance(method, MoCoV2):
        # On one fixed batch the queue fills with keys of the batch's own images, which makes the
        # task harder each step; with the initial random negatives kept the loss must fall.
        method._enqueue = lambda keys: None  # type: ignore[method-assign]
    losses = train(method, 8, fixed_batch=True)
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
    assert isinstance(method, MoCoV2)
    v1, v2, labels = batch("moco_v2")
    shuffle_state = method.shuffle_generator.get_state()
    method.loss(v1, v2, labels)
    method.shuffle_generator.set_state(shuffle_state)  # the same key shuffle again
    keys = torch.nn.functional.normalize(method.keys(torch.cat([v1, v2])), dim=1)
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


@pytest.mark.parametrize("shape", [(16, 4, 3, 3), (6, 4)])
def test_split_batch_norm_is_batch_norm_of_each_group(shape: tuple[int, ...]) -> None:
    """Each interleaved group is normalised with its own statistics and the layer's affine parameters."""
    source = torch.nn.BatchNorm2d(4) if len(shape) == 4 else torch.nn.BatchNorm1d(4)
    with torch.no_grad():
        source.weight.uniform_(0.5, 2.0)
        source.bias.uniform_(-1.0, 1.0)
    bn = SplitBatchNorm(source, max_groups=8)
    x = torch.randn(shape) * 3 + 1
    groups = 8 if shape[0] == 16 else 3
    expected = torch.empty_like(x)
    for g in range(groups):
        expected[g::groups] = torch.nn.functional.batch_norm(x[g::groups], None, None, source.weight, source.bias, training=True, eps=bn.eps)
    torch.testing.assert_close(bn(x), expected, atol=1e-5, rtol=1e-5)


def layer_kinds(head: torch.nn.Module) -> list[str]:
    """The head's layers in order, each as a short name with its sizes: ["Linear(64,32,bias)", "BN(32)", "ReLU", ...]."""
    kinds = []
    for m in head.modules():
        if isinstance(m, torch.nn.Linear):
            kinds.append(f"Linear({m.in_features},{m.out_features}{',bias' if m.bias is not None else ''})")
        elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            kinds.append(f"BN({m.num_features}{'' if m.affine else ',non-affine'})")
        elif isinstance(m, torch.nn.ReLU):
            kinds.append("ReLU")
    return kinds


def test_heads_are_built_as_each_reference_builds_them() -> None:
    # Feature dim 64 (ResNet-18 at width 0.125), hidden 32, projection 16, predictor hidden 8.
    assert layer_kinds(build("simclr").projector) == ["Linear(64,32)", "BN(32)", "ReLU", "Linear(32,16,bias)"]
    moco = build("moco_v2")
    assert layer_kinds(moco.projector) == ["Linear(64,32,bias)", "ReLU", "Linear(32,16,bias)"]  # MoCo v2: no BN in the head
    assert layer_kinds(moco.key_projector) == layer_kinds(moco.projector)
    byol = build("byol")
    assert layer_kinds(byol.projector) == ["Linear(64,32)", "BN(32)", "ReLU", "Linear(32,16,bias)"]
    assert layer_kinds(byol.predictor) == ["Linear(16,8)", "BN(8)", "ReLU", "Linear(8,16,bias)"]
    simsiam = build("simsiam")
    # CIFAR stem: SimSiam's 2-layer CIFAR projector; BN on every layer, the output's non-affine.
    assert layer_kinds(simsiam.projector) == ["Linear(64,32)", "BN(32)", "ReLU", "Linear(32,16)", "BN(16,non-affine)"]
    assert layer_kinds(simsiam.predictor) == ["Linear(16,8)", "BN(8)", "ReLU", "Linear(8,16,bias)"]  # the bottleneck
    imagenet = build("simsiam", stem="imagenet")
    assert layer_kinds(imagenet.projector) == [
        "Linear(64,32)", "BN(32)", "ReLU", "Linear(32,32)", "BN(32)", "ReLU", "Linear(32,16)", "BN(16,non-affine)"
    ]
    layers = mlp(8, 16, 4, num_layers=1)
    assert len(layers) == 1 and layers[0].out_features == 4


@pytest.mark.parametrize(
    "name, projector, predictor",
    [
        ("simsiam", ["Linear(512,2048)", "BN(2048)", "ReLU", "Linear(2048,2048)", "BN(2048,non-affine)"],
         ["Linear(2048,512)", "BN(512)", "ReLU", "Linear(512,2048,bias)"]),
        ("byol", ["Linear(512,4096)", "BN(4096)", "ReLU", "Linear(4096,256,bias)"],
         ["Linear(256,4096)", "BN(4096)", "ReLU", "Linear(4096,256,bias)"]),
        ("moco_v2", ["Linear(512,2048,bias)", "ReLU", "Linear(2048,128,bias)"], None),
        ("simclr", ["Linear(512,2048)", "BN(2048)", "ReLU", "Linear(2048,128,bias)"], None),
    ],
)
def test_recipe_sizes_at_full_width(name: str, projector: list[str], predictor: list[str] | None) -> None:
    """A config resolved from the recipes gives the references' head sizes on a width-1.0 ResNet-18."""
    config = TrialConfig.from_dict({"method": name})
    with torch.device("meta"):
        method = build_method(name, build_resnet(18, 1.0, 4, 1, "cifar"), config.method_params, CLASSES)
    assert layer_kinds(method.projector) == projector
    if predictor is not None:
        assert layer_kinds(method.predictor) == predictor


def test_heads_scale_with_width_and_unresolved_sizes_fail() -> None:
    config = TrialConfig.from_dict({"method": "simsiam", "backbone": {"width": 0.25}})
    assert (config.method_params.hidden_dim, config.method_params.projection_dim, config.method_params.predictor_hidden_dim) == (512, 512, 128)
    with pytest.raises(ValueError, match="predictor_hidden_dim"):
        build("byol", params=MethodConfig(hidden_dim=32, projection_dim=16))


def test_moco_queue_is_capped_at_the_number_of_training_images() -> None:
    assert build("moco_v2").queue.shape == (PARAMS.queue_size, PARAMS.projection_dim)
    assert build("moco_v2", num_train_images=25).queue.shape == (25, PARAMS.projection_dim)
    assert build("moco_v2", num_train_images=1000).queue.shape[0] == PARAMS.queue_size
    method = build("moco_v2", num_train_images=25)
    train(method, 1, fixed_batch=True)  # 32 keys into 25 slots: the newest 25 kept
    assert method.queue_ptr.item() == 0


def keys_unshuffled(method: MoCoV2, images: Tensor) -> Tensor:
    with torch.no_grad():
        return method.key_projector(method.key_encoder(images))


def test_moco_key_shuffle_restores_the_order() -> None:
    """With a key network that treats each sample alone, shuffling and un-shuffling changes nothing."""
    method = build("moco_v2")
    assert isinstance(method, MoCoV2)
    method.key_encoder = frozen_copy(method.encoder).eval()  # ordinary BN on running statistics: per sample
    images = torch.cat(batch("moco_v2")[:2])
    torch.testing.assert_close(method.keys(images), keys_unshuffled(method, images))


def test_moco_key_shuffle_changes_the_split_bn_groups() -> None:
    """With the split-BN key network, keys are those of a randomly permuted batch, put back in order."""
    method = build("moco_v2")
    assert isinstance(method, MoCoV2)
    images = torch.cat(batch("moco_v2")[:2])
    state = method.shuffle_generator.get_state()
    keys = method.keys(images)
    replay = torch.Generator().set_state(state)
    permutation = torch.randperm(len(images), generator=replay)
    assert not torch.equal(permutation, torch.arange(len(images)))
    torch.testing.assert_close(keys, keys_unshuffled(method, images[permutation])[torch.argsort(permutation)])
    # Each key's batch statistics come from other samples than without the shuffle.
    assert (keys - keys_unshuffled(method, images)).abs().amax(dim=1).min() > 1e-4
    assert not torch.allclose(method.keys(images), keys)  # a new permutation each call


def test_supervised_needs_classes_and_unknown_method_fails() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        build_method("supervised", build_resnet(10, 0.125, 4, 3, "cifar"), PARAMS, 0)
    with pytest.raises(ValueError, match="unknown method"):
        build_method("dino", build_resnet(10, 0.125, 4, 3, "cifar"), PARAMS, 10)


def test_methods_use_labels_only_when_supervised() -> None:
    for name in ("simclr", "byol"):
        method = build(name)
        v1, v2, labels = batch(name)
        torch.testing.assert_close(method.loss(v1, v2, labels), method.loss(v1, v2, labels.flip(0)))


@pytest.mark.parametrize("name", list(METHODS))
def test_the_loss_sees_both_views(name: str) -> None:
    """A method that encodes one view twice has identical positives and nothing to learn; its
    loss then ignores the other view. (Copies: MoCo's loss enqueues keys.)"""
    import copy

    method = build(name)
    v1, v2, labels = batch(name, seed=0)
    w1, w2, _ = batch(name, seed=1)
    base = copy.deepcopy(method).loss(v1, v2, labels).item()
    assert copy.deepcopy(method).loss(v1, w2, labels).item() != pytest.approx(base, rel=1e-4), "the loss ignores view 2"
    assert copy.deepcopy(method).loss(w1, v2, labels).item() != pytest.approx(base, rel=1e-4), "the loss ignores view 1"


@pytest.mark.parametrize("name", ["byol", "simsiam"])
def test_each_views_prediction_regresses_the_other_views_projection(name: str) -> None:
    """BYOL and SimSiam pair p1 with z2 and p2 with z1; pairing a view with itself learns nothing
    about invariance (the two sums differ as soon as the views do)."""
    from s3l_core.losses import byol_loss, simsiam_loss

    method = build(name)
    v1, v2, labels = batch(name)
    p1, p2, z1, z2 = method(v1, v2)
    crossed = byol_loss(p1, z2) + byol_loss(p2, z1) if name == "byol" else (simsiam_loss(p1, z2) + simsiam_loss(p2, z1)) / 2
    uncrossed = byol_loss(p1, z1) + byol_loss(p2, z2) if name == "byol" else (simsiam_loss(p1, z1) + simsiam_loss(p2, z2)) / 2
    assert crossed.item() != pytest.approx(uncrossed.item(), rel=1e-4)
    assert method.loss(v1, v2, labels).item() == pytest.approx(crossed.item(), rel=1e-5)


def test_every_registry_of_methods_names_the_same_methods():
    """A method lives in several name-keyed tables (config, implementation, recipe, augmentation,
    the settings each reads): one missing from any of them passed validation and failed at run
    time (issue 29), so they must agree."""
    from s3l_core.config import METHOD_NAMES
    from s3l_core.effects import READ_BY
    from s3l_core.methods import METHODS
    from s3l_core.recipes import RECIPES
    from s3l_core.views import PRESETS

    names = set(METHOD_NAMES)
    assert set(METHODS) == names and set(RECIPES) == names and set(PRESETS) == names
    assert set().union(*READ_BY.values()) <= names
