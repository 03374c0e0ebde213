"""The evaluation protocol of one trial: validation kNN while training, every measure once at the end.

Every arm of a study is evaluated the same way: at the dataset's evaluation resolution (its
native size unless `eval.resolution` says otherwise), with the same kNN bank, validation and
test images. Floors (raw-pixel kNN, and kNN on an untrained encoder of the trial's own
architecture) are measured on both the validation and the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from s3l_core.backbone import build_resnet
from s3l_core.config import TrialConfig
from s3l_core.cost import forward_flops_per_image
from s3l_core.evaluate import effective_rank, extract_features, knn_flops, knn_top1, linear_probe_top1, pixel_features
from s3l_core.finetune import RECALIBRATION_IMAGES, finetune, recalibrate_bn
from s3l_core.splits import TrialSplits

Encoder = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Floors:
    val_pixels: float
    val_random: float
    test_pixels: float
    test_random: float


@dataclass(frozen=True)
class FinalMetrics:
    knn_val_top1: float
    knn_top1: float  # test
    linear_val_top1: float | None
    linear_top1: float | None
    finetune_val_top1: float | None
    finetune_top1: float | None
    feature_rank: float  # effective rank of the normalised test features: low means collapse


class Evaluator:
    """Frozen-feature evaluation of one trial's encoders on its bank, validation and test images."""

    def __init__(
        self, config: TrialConfig, splits: TrialSplits, stem: str, native_size: int, num_classes: int, mean: torch.Tensor, std: torch.Tensor, device: torch.device
    ):
        self.config = config
        self.num_classes = num_classes
        self.splits = splits
        self.stem = stem
        self.mean, self.std = mean, std
        self.device = device
        self.resolution = config.eval.resolution or native_size
        self.channels = int(splits.bank_images.shape[1])
        self.per_image_flops = forward_flops_per_image(config.backbone, self.channels, stem, self.resolution)

    def _features(self, encoder: Encoder, images: torch.Tensor) -> torch.Tensor:
        return extract_features(encoder, images, self.resolution, self.mean, self.std, self.device)

    def _knn(self, bank: torch.Tensor, queries: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        e = self.config.eval
        accuracy = knn_top1(bank, self.splits.bank_labels, queries, labels, e.knn_k, e.knn_temperature)
        return accuracy, knn_flops(len(bank), len(queries), bank.shape[1])

    def prepared(self, encoder: nn.Module) -> tuple[nn.Module, float]:
        """The encoder to evaluate (BN statistics re-estimated at the evaluation resolution when
        `eval.bn_recalibrate`) and the FLOPs that took; the training encoder is left untouched."""
        if not self.config.eval.bn_recalibrate:
            return encoder, 0.0
        images = self.splits.bank_images
        recalibrated = recalibrate_bn(encoder, images, self.resolution, self.mean, self.std, self.device, seed=self.config.seed)
        return recalibrated, self.per_image_flops * min(len(images), RECALIBRATION_IMAGES)

    def monitor(self, encoder: nn.Module) -> tuple[float, float]:
        """(validation kNN top-1, FLOPs spent)."""
        encoder, flops = self.prepared(encoder)
        bank = self._features(encoder, self.splits.bank_images)
        val = self._features(encoder, self.splits.val_images)
        accuracy, search = self._knn(bank, val, self.splits.val_labels)
        return accuracy, flops + search + self.per_image_flops * (len(bank) + len(val))

    def final(self, encoder: nn.Module) -> tuple[FinalMetrics, float]:
        """Every end-of-run measure on validation and test, and the FLOPs spent."""
        s, e = self.splits, self.config.eval
        prepared, flops = self.prepared(encoder)
        bank = self._features(prepared, s.bank_images)
        val = self._features(prepared, s.val_images)
        test = self._features(prepared, s.test_images)
        flops += self.per_image_flops * (len(bank) + len(val) + len(test))
        knn_val, search_val = self._knn(bank, val, s.val_labels)
        knn_test, search_test = self._knn(bank, test, s.test_labels)
        flops += search_val + search_test
        linear_val = linear_test = None
        if e.linear_probe:
            scores, probe_flops = linear_probe_top1(bank, s.bank_labels, {"val": (val, s.val_labels), "test": (test, s.test_labels)})
            linear_val, linear_test = scores["val"], scores["test"]
            flops += probe_flops
        finetune_val = finetune_test = None
        if e.finetune is not None:
            tuned = finetune(
                encoder, self.config.backbone, s.bank_images, s.bank_labels,
                {"val": (s.val_images, s.val_labels), "test": (s.test_images, s.test_labels)},
                e.finetune, self.resolution, self.mean, self.std, self.num_classes, self.device, self.config.seed,
            )  # fmt: skip
            finetune_val, finetune_test = tuned.top1["val"], tuned.top1["test"]
            flops += tuned.flops
        metrics = FinalMetrics(knn_val, knn_test, linear_val, linear_test, finetune_val, finetune_test, effective_rank(test))
        return metrics, flops

    def floors(self) -> Floors:
        """What no pre-training reaches, on validation and test.

        The same for every trial that shares dataset, architecture, evaluation settings and
        seed, so a process that runs many trials (a reused Ray actor) computes them once.
        """
        c, e, s = self.config, self.config.eval, self.splits
        key = (c.dataset, c.data_dir, c.image_size, c.backbone, self.stem, self.resolution, c.seed, e.knn_k, e.knn_temperature, e.val_fraction, e.bn_recalibrate, self.device.type)
        if key not in _FLOOR_CACHE:
            pixels = lambda images: pixel_features(images, self.resolution, self.mean, self.std, self.device)  # noqa: E731
            pixel_bank = pixels(s.bank_images)
            val_pixels, _ = self._knn(pixel_bank, pixels(s.val_images), s.val_labels)
            test_pixels, _ = self._knn(pixel_bank, pixels(s.test_images), s.test_labels)
            torch.manual_seed(c.seed)
            b = c.backbone
            random_encoder = build_resnet(b.depth, b.width, b.stages, self.channels, self.stem).to(self.device).eval()
            random_encoder, _ = self.prepared(random_encoder)  # evaluated as the trained encoder is (BN recalibration)
            bank = self._features(random_encoder, s.bank_images)
            val_random, _ = self._knn(bank, self._features(random_encoder, s.val_images), s.val_labels)
            test_random, _ = self._knn(bank, self._features(random_encoder, s.test_images), s.test_labels)
            _FLOOR_CACHE[key] = Floors(val_pixels, val_random, test_pixels, test_random)
        return _FLOOR_CACHE[key]


_FLOOR_CACHE: dict[tuple[Any, ...], Floors] = {}
