"""Batched, seeded augmentation on the training device.

Two views of a uint8 batch are made with a handful of tensor ops per view: random resized
crop and horizontal flip through one affine grid per sample, colour jitter, random
grayscale, Gaussian blur and solarisation, in the order of SimCLR (Chen et al., 2020,
arXiv 2002.05709, appendix A). All random numbers come from the caller's generator, one
`torch.rand(N, 14)` per view, so a seed fixes the views on a given device. No op loops
over samples in Python.

Differences from torchvision's per-image pipeline, taken for speed and stated here once:
the jitter ops run in the fixed order brightness, contrast, saturation, hue (torchvision
shuffles them per image); hue is a rotation of the chroma plane in YIQ space rather than
an HSV shift; a crop whose sampled aspect ratio does not fit is clipped to the image
instead of being re-drawn.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import AugmentConfig, ConfigError, ConfigProblem

# Blur as MoCo v2 / torchvision's GaussianBlur: sigma in [0.1, 2.0] pixels of the output view.
# (Scaling sigma down with the view made it a no-op below ~64 px: under 0.0003 of a pixel
# value at 32 px.) Datasets of small images drop the presets' blur instead, as SimCLR's CIFAR
# recipe does; an explicit `augment.blur: true` keeps it at any size.
BLUR_SIGMA = (0.1, 2.0)
from .effects import PRESET_BLUR_MIN_RESOLUTION  # noqa: E402 (one constant for views and the validator)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale
# Columns of the per-view random draw, in the order they are used.
_SCALE, _RATIO, _CX, _CY, _FLIP, _JITTER, _BRIGHT, _CONTRAST, _SAT, _HUE, _GRAY, _BLUR, _SIGMA, _SOLAR = range(14)
_DRAWS = 14


@dataclass(frozen=True)
class AugmentPreset:
    """One method's augmentation recipe. Pairs are (first view, second view), for BYOL's asymmetry."""

    min_scale: float
    color_jitter: float  # strength s: brightness, contrast, saturation 0.8s; hue 0.2s
    blur_prob: tuple[float, float]
    max_scale: float = 1.0
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2
    solarize_prob: tuple[float, float] = (0.0, 0.0)


PRESETS: dict[str, AugmentPreset] = {
    # SimCLR (Chen et al., 2020): ImageNet recipe, jitter strength 1.0, blur p=0.5.
    "simclr": AugmentPreset(min_scale=0.08, color_jitter=1.0, blur_prob=(0.5, 0.5)),
    # MoCo v2 (Chen et al., 2020, arXiv 2003.04297): crop scale from 0.2, jitter (0.4, 0.4, 0.4, 0.1).
    "moco_v2": AugmentPreset(min_scale=0.2, color_jitter=0.5, blur_prob=(0.5, 0.5)),
    # BYOL (Grill et al., 2020, table 6): blur 1.0 / 0.1, solarise 0 / 0.2. BYOL's saturation is
    # 0.2 where strength 0.5 gives 0.4; one strength knob keeps presets comparable.
    "byol": AugmentPreset(min_scale=0.08, color_jitter=0.5, blur_prob=(1.0, 0.1), solarize_prob=(0.0, 0.2)),
    # SimSiam (Chen & He, 2021): MoCo v2's recipe.
    "simsiam": AugmentPreset(min_scale=0.2, color_jitter=0.5, blur_prob=(0.5, 0.5)),
    # The supervised reference: crop and flip only.
    "supervised": AugmentPreset(
        min_scale=0.08, color_jitter=0.0, blur_prob=(0.0, 0.0), jitter_prob=0.0, grayscale_prob=0.0
    ),
}
DEFAULT_BLUR_PROB = (0.5, 0.5)
DEFAULT_JITTER_PROB = 0.8


def preset_for(method: str, augment: AugmentConfig, native_size: int) -> AugmentPreset:
    """The method's preset for a dataset of `native_size` px images, with every non-None field of
    `augment` applied. Blur is decided from the dataset, never from an arm's resolution: every arm
    of a resolution study gets the same augmentation, as every arm gets the same stem."""
    if method not in PRESETS:  # a ConfigError: Ray does not retry it (a retry cannot fix a config)
        raise ConfigError([ConfigProblem("method", f"no augmentation preset for method '{method}'; known: {', '.join(PRESETS)}")])
    preset = PRESETS[method]
    changes: dict[str, object] = {}
    if native_size < PRESET_BLUR_MIN_RESOLUTION:
        changes["blur_prob"] = (0.0, 0.0)
    if augment.min_scale is not None:
        changes["min_scale"] = augment.min_scale
        changes["max_scale"] = max(preset.max_scale, augment.min_scale)
    if augment.color_jitter is not None:
        changes["color_jitter"] = augment.color_jitter
        if augment.color_jitter > 0 and preset.jitter_prob == 0:
            changes["jitter_prob"] = DEFAULT_JITTER_PROB
    if augment.blur is not None:
        if not augment.blur:
            changes["blur_prob"] = (0.0, 0.0)
        else:
            changes["blur_prob"] = preset.blur_prob if any(preset.blur_prob) else DEFAULT_BLUR_PROB
    return dataclasses.replace(preset, **changes)


def make_views(
    images: Tensor,
    resolution: int,
    preset: AugmentPreset,
    mean: Tensor,
    std: Tensor,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Two augmented, normalised float32 views (N, C, resolution, resolution) of a uint8 batch (N, C, H, W)."""
    x = _to_unit(images)
    first = _augment(x, resolution, preset, 0, generator)
    second = _augment(x, resolution, preset, 1, generator)
    return _normalise(first, mean, std), _normalise(second, mean, std)


def eval_batch(images: Tensor, resolution: int, mean: Tensor, std: Tensor) -> Tensor:
    """Un-augmented float32 batch at `resolution`, for kNN and linear-probe features."""
    x = _to_unit(images)
    height, width = x.shape[-2:]
    if (height, width) != (resolution, resolution):
        downsampling = resolution < max(height, width)
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=downsampling)
    return _normalise(x, mean, std)


def _to_unit(images: Tensor) -> Tensor:
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    return images.float().div_(255)


def _normalise(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    shape = (1, -1, 1, 1)
    return (x - mean.to(x).view(shape)) / std.to(x).view(shape)


def _augment(x: Tensor, resolution: int, preset: AugmentPreset, view: int, generator: torch.Generator) -> Tensor:
    u = torch.rand(x.shape[0], _DRAWS, generator=generator, device=x.device)
    out = _resized_crop(x, resolution, preset, u)
    if preset.color_jitter > 0 and preset.jitter_prob > 0:
        out = _color_jitter(out, preset, u)
    if out.shape[1] == 3 and preset.grayscale_prob > 0:
        gray = (u[:, _GRAY] < preset.grayscale_prob).view(-1, 1, 1, 1)
        out = torch.where(gray, _luma(out).expand_as(out), out)
    if preset.blur_prob[view] > 0:
        out = _gaussian_blur(out, preset.blur_prob[view], u)
    if preset.solarize_prob[view] > 0:
        solarize = (u[:, _SOLAR] < preset.solarize_prob[view]).view(-1, 1, 1, 1)
        out = torch.where(solarize & (out >= 0.5), 1 - out, out)
    return out


def _resized_crop(x: Tensor, resolution: int, preset: AugmentPreset, u: Tensor) -> Tensor:
    """Random resized crop with the flip folded into each sample's affine map, sampled straight to `resolution`."""
    n, _, height, width = x.shape
    area = preset.min_scale + (preset.max_scale - preset.min_scale) * u[:, _SCALE]
    log_lo, log_hi = math.log(preset.ratio[0]), math.log(preset.ratio[1])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u[:, _RATIO])
    # Half-extents in grid units ([-1, 1] spans the image); the ratio is width/height in pixels.
    half_w = torch.sqrt(area * ratio * height / width).clamp(max=1)
    half_h = torch.sqrt(area / ratio * width / height).clamp(max=1)
    centre_x = (1 - half_w) * (2 * u[:, _CX] - 1)
    centre_y = (1 - half_h) * (2 * u[:, _CY] - 1)
    mirror = torch.where(u[:, _FLIP] < preset.flip, -1.0, 1.0)
    zero = torch.zeros_like(half_w)
    theta = torch.stack([half_w * mirror, zero, centre_x, zero, half_h, centre_y], dim=1).view(n, 2, 3)
    # Bilinear sampling of a much larger image aliases; sampling k x k points per output pixel
    # and averaging them is a cheap box pre-filter.
    k = min(4, max(1, math.ceil(max(height, width) / resolution)))
    grid = F.affine_grid(theta.to(x.dtype), [n, x.shape[1], k * resolution, k * resolution], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return F.avg_pool2d(out, k) if k > 1 else out


def _color_jitter(x: Tensor, preset: AugmentPreset, u: Tensor) -> Tensor:
    """Brightness and contrast on any image; saturation and hue only on RGB, as torchvision's ColorJitter."""
    strength = preset.color_jitter
    apply = u[:, _JITTER] < preset.jitter_prob

    def factor(column: int) -> Tensor:
        lo, hi = max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength
        return torch.where(apply, lo + (hi - lo) * u[:, column], 1.0).view(-1, 1, 1, 1)

    rgb = x.shape[1] == 3
    x = (x * factor(_BRIGHT)).clamp_(0, 1)
    mean = (_luma(x) if rgb else x).mean(dim=(1, 2, 3), keepdim=True)
    x = torch.lerp(mean, x, factor(_CONTRAST)).clamp_(0, 1)
    if not rgb:
        return x
    x = torch.lerp(_luma(x), x, factor(_SAT)).clamp_(0, 1)
    hue_range = min(0.5, 0.2 * strength)
    hue = torch.where(apply, hue_range * (2 * u[:, _HUE] - 1), 0.0)
    return _rotate_hue(x, hue).clamp_(0, 1)


def _luma(x: Tensor) -> Tensor:
    weights = _constants(x.device, x.dtype)[0]
    return torch.einsum("nchw,c->nhw", x, weights).unsqueeze(1)


@functools.lru_cache(maxsize=None)
def _constants(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Luma weights and the RGB<->YIQ matrices, made once per device so no host-to-device copy runs per batch."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
    luma = torch.tensor(LUMA, dtype=torch.float64)
    return luma.to(device, dtype), to_yiq.to(device, dtype), torch.linalg.inv(to_yiq).to(device, dtype)


def _rotate_hue(x: Tensor, hue: Tensor) -> Tensor:
    """Shift hue by `hue` turns: rotate the (I, Q) chroma plane, keeping luma Y, one 3x3 matrix per sample."""
    _, to_yiq, from_yiq = _constants(x.device, x.dtype)
    angle = -2 * math.pi * hue  # the YIQ chroma angle turns the opposite way to HSV hue
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=1).view(-1, 3, 3)
    matrix = from_yiq @ rotation @ to_yiq
    return torch.einsum("nij,njhw->nihw", matrix, x)


def _gaussian_blur(x: Tensor, prob: float, u: Tensor) -> Tensor:
    """Separable blur with a per-sample sigma (output pixels) as one depthwise conv over all N*C planes."""
    n, c, height, width = x.shape
    lo, hi = BLUR_SIGMA
    radius = min(max(1, math.ceil(3 * hi)), (min(height, width) - 1) // 2 or 1)
    sigma = lo + (hi - lo) * u[:, _SIGMA]
    # A vanishing sigma turns a sample's kernel into a unit impulse: unblurred, without a branch.
    sigma = torch.where(u[:, _BLUR] < prob, sigma, 1e-6)
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)
    size = 2 * radius + 1
    planes = x.reshape(1, n * c, height, width)
    planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode="replicate"), kernel.view(n * c, 1, 1, size), groups=n * c)
    planes = F.conv2d(F.pad(planes, (0, 0, radius, radius), mode="replicate"), kernel.view(n * c, 1, size, 1), groups=n * c)
    return planes.view(n, c, height, width)
