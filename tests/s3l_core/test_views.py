import dataclasses

import pytest
import torch

from s3l_core.config import AugmentConfig
from s3l_core.views import PRESET_BLUR_MIN_RESOLUTION, PRESETS, AugmentPreset, eval_batch, make_views, preset_for

MEAN3, STD3 = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
MEAN1, STD1 = torch.tensor([0.5]), torch.tensor([0.25])
# Crop the whole image, never flip, no photometric op: the view should equal the image itself.
IDENTITY = AugmentPreset(
    min_scale=1.0, ratio=(1.0, 1.0), flip=0.0, color_jitter=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=(0.0, 0.0)
)


def images(n: int = 8, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def smooth_images(n: int, c: int, size: int, seed: int) -> torch.Tensor:
    """Natural-looking images: coarse noise upsampled, so an op that barely acts (a blur of a
    hundredth of a pixel) barely changes them, as on real photographs."""
    coarse = torch.rand(n, c, max(2, size // 6), max(2, size // 6), generator=torch.Generator().manual_seed(seed))
    fine = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return (fine.clamp(0, 1) * 255).round().to(torch.uint8)


def views(x: torch.Tensor, resolution: int, preset: AugmentPreset, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = (MEAN3, STD3) if x.shape[1] == 3 else (MEAN1, STD1)
    return make_views(x, resolution, preset, mean, std, torch.Generator().manual_seed(seed))


def unnormalise(v: torch.Tensor, mean: torch.Tensor = MEAN3, std: torch.Tensor = STD3) -> torch.Tensor:
    return v * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)


@pytest.mark.parametrize("method", list(PRESETS))
def test_shapes_dtype_device(method: str) -> None:
    x = images()
    v1, v2 = views(x, 16, preset_for(method, AugmentConfig(), 16))
    for v in (v1, v2):
        assert v.shape == (8, 3, 16, 16) and v.dtype == torch.float32 and v.device == x.device
        assert torch.isfinite(v).all()


def test_same_seed_same_views_other_seed_other_views() -> None:
    x, preset = images(), PRESETS["byol"]
    a, b, c = views(x, 16, preset, seed=1), views(x, 16, preset, seed=1), views(x, 16, preset, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.allclose(a[0], c[0])


def test_two_views_differ() -> None:
    v1, v2 = views(images(), 16, PRESETS["simclr"])
    assert not torch.allclose(v1, v2)


def test_two_views_take_independent_crops() -> None:
    """Geometry alone must differ between the views (not only colour jitter): with a crop-only
    preset nearly every image gets two different crops."""
    x = smooth_images(n=32, c=3, size=32, seed=3)
    v1, v2 = views(x, 32, dataclasses.replace(IDENTITY, min_scale=0.2))
    differs = (v1 - v2).abs().flatten(1).amax(1) > 0.05
    assert differs.float().mean() > 0.9


def test_two_views_flip_independently() -> None:
    """With a flip-only preset each view of an image is the image or its mirror, drawn per view:
    some images come out mirrored in one view only, others the same in both."""
    x = images(n=64)
    plain = eval_batch(x, 32, MEAN3, STD3)
    v1, v2 = views(x, 32, dataclasses.replace(IDENTITY, flip=0.5))
    mirrored = []
    for v in (v1, v2):
        same = (v - plain).abs().flatten(1).amax(1) < 1e-5
        flipped = (v - plain.flip(-1)).abs().flatten(1).amax(1) < 1e-5
        assert (same ^ flipped).all()  # each view is exactly one of the two
        mirrored.append(flipped)
    disagree = (mirrored[0] != mirrored[1]).float().mean()
    assert 0.25 < disagree < 0.75  # independent fair coins disagree about half the time
    assert 0.3 < mirrored[0].float().mean() < 0.7


def test_identity_preset_reproduces_the_image() -> None:
    x = images()
    v1, v2 = views(x, 32, IDENTITY)
    expected = eval_batch(x, 32, MEAN3, STD3)
    torch.testing.assert_close(v1, expected)
    torch.testing.assert_close(v2, expected)


def test_flip_mirrors_the_image() -> None:
    x = images()
    v1, _ = views(x, 32, dataclasses.replace(IDENTITY, flip=1.0))
    torch.testing.assert_close(v1, eval_batch(x, 32, MEAN3, STD3).flip(-1))


def test_crop_zooms_into_part_of_the_image() -> None:
    # Each pixel's value is its column index: a crop of a quarter of the area spans half the columns.
    ramp = torch.arange(64, dtype=torch.uint8).repeat(4, 3, 64, 1)
    v, _ = views(ramp, 64, dataclasses.replace(IDENTITY, min_scale=0.25, max_scale=0.25))
    columns = unnormalise(v)[:, 0] * 255
    span = columns.amax(dim=(1, 2)) - columns.amin(dim=(1, 2))
    assert torch.all((span > 28) & (span < 34))
    assert not torch.allclose(v, eval_batch(ramp, 64, MEAN3, STD3))


def test_grayscale_data_skips_colour_ops() -> None:
    x = images(c=1)
    colourful = dataclasses.replace(PRESETS["simclr"], jitter_prob=1.0, grayscale_prob=1.0)
    v1, v2 = views(x, 16, colourful)
    assert v1.shape == v2.shape == (8, 1, 16, 16)
    # Without jitter, the grayscale probability must leave one-channel data untouched.
    v, _ = views(x, 32, dataclasses.replace(IDENTITY, grayscale_prob=1.0))
    torch.testing.assert_close(v, eval_batch(x, 32, MEAN1, STD1))


def test_random_grayscale_equalises_channels() -> None:
    v, _ = views(images(), 16, dataclasses.replace(IDENTITY, grayscale_prob=1.0))
    rgb = unnormalise(v)
    torch.testing.assert_close(rgb[:, 0], rgb[:, 1])
    torch.testing.assert_close(rgb[:, 1], rgb[:, 2])


def test_colour_jitter_keeps_grey_grey_and_changes_colour() -> None:
    grey = images(c=1).repeat(1, 3, 1, 1)
    jitter = dataclasses.replace(IDENTITY, color_jitter=1.0, jitter_prob=1.0)
    v, _ = views(grey, 32, jitter)
    rgb = unnormalise(v)
    torch.testing.assert_close(rgb[:, 0], rgb[:, 2], atol=1e-4, rtol=0)
    colour = images()
    v, _ = views(colour, 32, jitter)
    assert (unnormalise(v) - colour.float() / 255).abs().mean() > 0.02
    assert unnormalise(v).min() >= -1e-5 and unnormalise(v).max() <= 1 + 1e-5


def test_blur_smooths() -> None:
    x = images(size=64)
    sharp, _ = views(x, 64, IDENTITY)
    blurred, _ = views(x, 64, dataclasses.replace(IDENTITY, blur_prob=(1.0, 1.0)))

    def roughness(v: torch.Tensor) -> torch.Tensor:
        return (v[..., 1:] - v[..., :-1]).abs().mean()

    assert roughness(blurred) < 0.9 * roughness(sharp)
    torch.testing.assert_close(blurred.mean(), sharp.mean(), atol=1e-2, rtol=0)


def test_blur_and_solarize_follow_the_view() -> None:
    x = images()
    only_second = dataclasses.replace(IDENTITY, blur_prob=(0.0, 1.0), solarize_prob=(0.0, 1.0))
    v1, v2 = views(x, 32, only_second)
    expected = eval_batch(x, 32, MEAN3, STD3)
    torch.testing.assert_close(v1, expected)
    assert unnormalise(v2).max() <= 0.5 + 1e-5  # solarised: every value above one half is inverted


def test_upsampling_beyond_the_input_size() -> None:
    x = images(size=8)
    v1, v2 = views(x, 32, PRESETS["moco_v2"])
    assert v1.shape == v2.shape == (8, 3, 32, 32) and torch.isfinite(v1).all()


def test_preset_overrides() -> None:
    base = PRESETS["byol"]
    assert preset_for("byol", AugmentConfig(), 96) == base
    changed = preset_for("byol", AugmentConfig(min_scale=0.5, color_jitter=0.2, blur=False), 96)
    assert (changed.min_scale, changed.color_jitter, changed.blur_prob) == (0.5, 0.2, (0.0, 0.0))
    assert preset_for("supervised", AugmentConfig(blur=True), 96).blur_prob[0] > 0
    assert preset_for("supervised", AugmentConfig(color_jitter=0.5), 96).jitter_prob > 0
    with pytest.raises(ValueError, match="unknown_method|no augmentation preset"):
        preset_for("unknown_method", AugmentConfig(), 96)


def test_small_views_drop_the_presets_blur_but_an_explicit_blur_stays() -> None:
    """As SimCLR's CIFAR recipe: presets blur only views of PRESET_BLUR_MIN_RESOLUTION px and up."""
    assert preset_for("byol", AugmentConfig(), PRESET_BLUR_MIN_RESOLUTION - 1).blur_prob == (0.0, 0.0)
    assert preset_for("byol", AugmentConfig(), PRESET_BLUR_MIN_RESOLUTION).blur_prob == (1.0, 0.1)
    assert preset_for("byol", AugmentConfig(blur=True), 14).blur_prob == (1.0, 0.1)  # BYOL's asymmetry kept
    assert preset_for("simclr", AugmentConfig(blur=True), 14).blur_prob == (0.5, 0.5)


def _active_operations(preset: AugmentPreset, channels: int) -> dict[str, AugmentPreset]:
    """Each operation the preset applies, alone and always on (both views), on top of the identity."""
    ops: dict[str, AugmentPreset] = {}
    if preset.min_scale < 1:
        ops["crop"] = dataclasses.replace(IDENTITY, min_scale=preset.min_scale, ratio=preset.ratio)
    if preset.flip > 0:
        ops["flip"] = dataclasses.replace(IDENTITY, flip=1.0)
    if preset.color_jitter > 0 and preset.jitter_prob > 0:
        ops["jitter"] = dataclasses.replace(IDENTITY, color_jitter=preset.color_jitter, jitter_prob=1.0)
    if preset.grayscale_prob > 0 and channels == 3:
        ops["grayscale"] = dataclasses.replace(IDENTITY, grayscale_prob=1.0)
    if any(preset.blur_prob):
        ops["blur"] = dataclasses.replace(IDENTITY, blur_prob=(1.0, 1.0))
    if any(preset.solarize_prob):
        ops["solarize"] = dataclasses.replace(IDENTITY, solarize_prob=(1.0, 1.0))
    return ops


@pytest.mark.parametrize("resolution", [14, 28, 32, 96])
@pytest.mark.parametrize("method", list(PRESETS))
def test_every_operation_of_every_preset_changes_its_input_measurably(method: str, resolution: int) -> None:
    """No augmentation is a silent no-op: each one a preset applies at this size moves pixels by
    more than 1% of the range on average (the old resolution-scaled blur moved them < 0.03%)."""
    for channels in (1, 3):
        # blur=True: the preset's own blur from 64 px, and an explicit blur below it, must both act
        preset = preset_for(method, AugmentConfig(blur=True), resolution)
        x = smooth_images(n=16, c=channels, size=resolution, seed=resolution)
        mean, std = (MEAN3, STD3) if channels == 3 else (MEAN1, STD1)
        plain = unnormalise(views(x, resolution, IDENTITY)[0], mean, std)
        for name, alone in _active_operations(preset, channels).items():
            changed = unnormalise(views(x, resolution, alone)[0], mean, std)
            moved = (changed - plain).abs().mean().item()
            assert moved > 0.01, f"{method} at {resolution} px, {channels} channel(s): {name} moved pixels by only {moved:.5f}"


def test_eval_batch_resizes_and_normalises() -> None:
    x = images(size=32)
    same = eval_batch(x, 32, MEAN3, STD3)
    torch.testing.assert_close(unnormalise(same), x.float() / 255)
    small, large = eval_batch(x, 16, MEAN3, STD3), eval_batch(x, 48, MEAN3, STD3)
    assert small.shape == (8, 3, 16, 16) and large.shape == (8, 3, 48, 48) and small.dtype == torch.float32
    # Antialiased downsampling of a constant image stays constant.
    flat = torch.full((2, 1, 32, 32), 200, dtype=torch.uint8)
    torch.testing.assert_close(unnormalise(eval_batch(flat, 10, MEAN1, STD1), MEAN1, STD1), torch.full((2, 1, 10, 10), 200 / 255))


def test_rejects_float_images() -> None:
    with pytest.raises(TypeError, match="uint8"):
        eval_batch(torch.rand(2, 3, 8, 8), 8, MEAN3, STD3)


def test_hue_rotation_turns_like_hsv_hue() -> None:
    from s3l_core.views import _rotate_hue

    red = torch.zeros(2, 3, 1, 1)
    red[:, 0] = 1
    turned = _rotate_hue(red, torch.tensor([0.0, 1 / 3])).clamp(0, 1).flatten(1)
    torch.testing.assert_close(turned[0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    assert turned[1].argmax() == 1  # a third of a turn takes red to green


def test_blur_is_decided_by_the_datasets_image_size_so_every_arm_of_a_resolution_study_has_the_same_augmentation():
    """On a 96 px dataset a 32/48/64/96 px grid switched blur on with the arm (issue 24)."""
    from s3l_core.config import TrialConfig

    arms = {r: TrialConfig.from_dict({"dataset": "stl10", "method": "simclr", "resolution": r}) for r in (32, 48, 64, 96)}
    presets = {r: preset_for(c.method, c.augment, 96) for r, c in arms.items()}
    assert len(set(presets.values())) == 1 and presets[32].blur_prob == PRESETS["simclr"].blur_prob != (0.0, 0.0)
    small = {r: preset_for("simclr", TrialConfig.from_dict({"dataset": "cifar10", "resolution": r}).augment, 32) for r in (16, 32, 64)}
    assert len(set(small.values())) == 1 and small[64].blur_prob == (0.0, 0.0)  # an upsampled arm does not gain blur


def test_an_arm_whose_blur_the_old_per_arm_rule_decided_otherwise_records_the_decision_so_its_id_changes():
    from s3l_core.config import TrialConfig

    blur = {(d, r): TrialConfig.from_dict({"dataset": d, "resolution": r}).augment.blur
            for d, r in (("stl10", 32), ("stl10", 96), ("cifar10", 64), ("cifar10", 16), ("fashion-mnist-sample", 14))}
    assert blur == {("stl10", 32): True, ("stl10", 96): None, ("cifar10", 64): False, ("cifar10", 16): None, ("fashion-mnist-sample", 14): None}
