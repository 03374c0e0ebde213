import pytest
import torch
from torch import nn

from s3l_core.backbone import SMALL_STEM_BELOW, build_resnet, stem_for
from s3l_core.config import TrialConfig
from s3l_core.cost import train_step_flops
from s3l_core.dataset_catalog import BUILTIN_SHAPES
from sweeper.estimate.cost_model import predicted_train_pflops


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "depth, expected_dim",
    [(10, 64), (18, 64), (34, 64), (50, 256)],  # 512 * 0.125, and x4 for the bottleneck
)
def test_output_shape_per_depth(depth: int, expected_dim: int) -> None:
    model = build_resnet(depth, 0.125, 4, 3, "cifar")
    out = model(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, expected_dim)
    assert model.feature_dim == expected_dim


def test_depth_adds_blocks() -> None:
    sizes = [count_params(build_resnet(d, 0.125, 4, 3, "cifar")) for d in (10, 18, 34)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3


def test_width_multiplies_channels() -> None:
    narrow = build_resnet(18, 0.25, 4, 3, "cifar")
    wide = build_resnet(18, 0.5, 4, 3, "cifar")
    assert (narrow.feature_dim, wide.feature_dim) == (128, 256)
    assert count_params(wide) > 3 * count_params(narrow)
    assert build_resnet(18, 1.0, 4, 3, "cifar").feature_dim == 512


def test_tiny_width_keeps_at_least_one_channel() -> None:
    model = build_resnet(18, 0.001, 4, 3, "cifar")
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, model.feature_dim)
    assert model.feature_dim >= 1


def test_three_stages_drop_conv5() -> None:
    full = build_resnet(50, 0.125, 4, 3, "cifar")
    short = build_resnet(50, 0.125, 3, 3, "cifar")
    assert short.feature_dim == full.feature_dim // 2
    assert count_params(short) < count_params(full) / 2
    assert short(torch.randn(2, 3, 16, 16)).shape == (2, short.feature_dim)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_input_channels(in_channels: int) -> None:
    model = build_resnet(18, 0.125, 4, in_channels, "cifar")
    assert model.stem[0].in_channels == in_channels
    assert model(torch.randn(2, in_channels, 16, 16)).shape == (2, 64)


def test_stems_are_the_cifar_and_imagenet_variants() -> None:
    small = build_resnet(18, 0.125, 4, 3, "cifar")
    large = build_resnet(18, 0.125, 4, 3, "imagenet")
    assert small.stem[0].kernel_size == (3, 3) and small.stem[0].stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in small.modules())
    assert large.stem[0].kernel_size == (7, 7) and large.stem[0].stride == (2, 2)
    assert isinstance(large.stem[-1], nn.MaxPool2d)
    assert large(torch.randn(2, 3, 96, 96)).shape == (2, 64)


def test_stem_follows_the_dataset_never_the_trial() -> None:
    assert stem_for(28) == stem_for(32) == "cifar"
    assert stem_for(SMALL_STEM_BELOW) == stem_for(224) == "imagenet"
    assert stem_for(28, "imagenet") == "imagenet" and stem_for(96, "cifar") == "cifar"
    with pytest.raises(ValueError, match="stem"):
        stem_for(32, "resnet")


def test_resolution_arms_on_a_96px_dataset_share_the_architecture_and_flops_grow_with_resolution() -> None:
    """An arm of a resolution study differs from its full-size twin only in the input size."""
    configs = {r: TrialConfig.from_dict({"dataset": "stl10", "resolution": r, "backbone": {"width": 0.125}, "epochs": 1}) for r in (32, 64, 96)}
    stems = {r: stem_for(BUILTIN_SHAPES["stl10"].native_size, c.backbone.stem) for r, c in configs.items()}
    assert set(stems.values()) == {"imagenet"}
    params = {r: count_params(build_resnet(18, 0.125, 4, 3, stems[r])) for r in configs}
    assert len(set(params.values())) == 1
    flops = [train_step_flops("simclr", c.backbone, c.method_params, 3, 10, stems[r], r, 8) for r, c in configs.items()]
    assert flops[0] < flops[1] < flops[2]
    predicted = [predicted_train_pflops(c) for c in configs.values()]
    assert predicted[0] < predicted[1] < predicted[2]


@pytest.mark.parametrize("resolution", [8, 64])
def test_works_at_small_and_larger_resolution(resolution: int) -> None:
    model = build_resnet(18, 0.125, 4, 3, "cifar")
    out = model(torch.randn(2, 3, resolution, resolution))
    assert out.shape == (2, 64) and torch.isfinite(out).all()


def test_channels_last_matches() -> None:
    model = build_resnet(18, 0.125, 4, 3, "cifar").eval()
    x = torch.randn(2, 3, 16, 16)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), expected, rtol=1e-4, atol=1e-4)


def test_rejects_unknown_depth() -> None:
    with pytest.raises(ValueError, match="depth"):
        build_resnet(101, 1.0, 4, 3, "cifar")
