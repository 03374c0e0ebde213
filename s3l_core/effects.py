"""Settings that cannot take effect on a trial: the validator warns about each (no setting may
be a silent no-op). Torch-free, so validating a study stays fast."""

from __future__ import annotations

from collections.abc import Iterable

from s3l_core.dataset_catalog import assumed_native_size

from s3l_core.recipes import RECIPES

# s3l_core.views drops the presets' blur for a dataset whose images are smaller than this: decided
# from the dataset, never from an arm's resolution, so every arm of a study has the same augmentation.
PRESET_BLUR_MIN_RESOLUTION = 64
# method_params key -> the methods that read it
READ_BY: dict[str, tuple[str, ...]] = {
    "method_params.temperature": ("simclr", "moco_v2"),
    "method_params.queue_size": ("moco_v2",),
    "method_params.ema": ("moco_v2", "byol"),
    "method_params.predictor_hidden_dim": tuple(m for m, r in RECIPES.items() if r.predictor_hidden_dim),
    "method_params.projection_dim": ("simclr", "moco_v2", "byol", "simsiam"),
    "method_params.hidden_dim": ("simclr", "moco_v2", "byol", "simsiam"),
}


def ineffective_settings(set_keys: Iterable[str], method: str, channels: int | None, native_size: int | None) -> list[tuple[str, str]]:
    """(dotted key, why) for each key a study set that changes nothing for `method` on images
    with `channels` channels of side `native_size` (None: unknown)."""
    out = []
    keys = set(set_keys)
    for key, methods in READ_BY.items():
        if key in keys and method not in methods:
            out.append((key, f"has no effect on {method}: only {', '.join(methods)} read it"))
    if "augment.color_jitter" in keys and channels == 1:
        out.append(("augment.color_jitter", "on a 1-channel dataset only its brightness and contrast act; saturation and hue do nothing"))
    if "augment.blur" in keys and native_size is not None and native_size < PRESET_BLUR_MIN_RESOLUTION and method != "supervised":
        out.append(("augment.blur", f"the presets already drop blur for images under {PRESET_BLUR_MIN_RESOLUTION} px: "
                    "false changes nothing here (true turns it on)"))
    return out


def preset_blur(dataset: str, image_size: int | None = None) -> bool:
    """Whether the method presets blur the views of this dataset (its native size, not an arm's)."""
    return assumed_native_size(dataset, image_size) >= PRESET_BLUR_MIN_RESOLUTION
