"""The evaluation protocol of one trial: validation kNN while training, every measure once at the end.

Every arm of a study is evaluated the same way: at the dataset's evaluation resolution (its
native size unless `eval.resolution` says otherwise), with the same kNN bank, validation and
test images. Every accuracy has the floors of its own protocol, measured on both the
validation and the test split (`s3l_core.floors`): kNN on raw pixels and on an untrained
encoder of the trial's own architecture; the same linear probe on raw pixels and on that
untrained encoder; and for fine-tuning, the same fine-tuning (epochs, rate, resolution) from
random initialisation, beside the linear probe on raw pixels. A floor is what the protocol
scores with no pre-training: an accuracy that does not beat it was not learned by pre-training.
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
    """What no pre-training reaches, per protocol; None where the trial did not run the protocol."""

    val_pixels: float  # kNN
    val_random: float
    test_pixels: float
    test_random: float
    linear_val_pixels: float | None = None  # the linear probe, with eval.linear_probe or eval.finetune
    linear_val_random: float | None = None
    linear_test_pixels: float | None = None
    linear_test_random: float | None = None
    finetune_val_random: float | None = None  # the same fine-tuning from random initialisation, with eval.finetune
    finetune_test_random: float | None = None


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
        """What no pre-training reaches, on validation and test, for every protocol the trial runs.

        The same for every trial that shares dataset, architecture, evaluation settings and
        seed, so a process that runs many trials (a reused Ray actor) computes them once.
        """
        c, e = self.config, self.config.eval
        key = (c.dataset, c.data_dir, c.image_size, c.backbone, self.stem, self.resolution, c.seed, e.knn_k, e.knn_temperature,
               e.val_fraction, e.bn_recalibrate, e.linear_probe, e.finetune, self.device.type)  # fmt: skip
        if key not in _FLOOR_CACHE:
            _FLOOR_CACHE[key] = self._measure_floors()
        return _FLOOR_CACHE[key]

    def _measure_floors(self) -> Floors:
        c, e, s = self.config, self.config.eval, self.splits
        sets = lambda features: {"val": (features(s.val_images), s.val_labels), "test": (features(s.test_images), s.test_labels)}  # noqa: E731
        pixels = lambda images: pixel_features(images, self.resolution, self.mean, self.std, self.device)  # noqa: E731
        pixel_bank, pixel_sets = pixels(s.bank_images), sets(pixels)
        knn_pixels = {name: self._knn(pixel_bank, f, labels)[0] for name, (f, labels) in pixel_sets.items()}
        torch.manual_seed(c.seed)
        b = c.backbone
        untrained = build_resnet(b.depth, b.width, b.stages, self.channels, self.stem).to(self.device).eval()
        prepared, _ = self.prepared(untrained)  # evaluated as the trained encoder is (BN recalibration)
        features = lambda images: self._features(prepared, images)  # noqa: E731
        bank, random_sets = features(s.bank_images), sets(features)
        knn_random = {name: self._knn(bank, f, labels)[0] for name, (f, labels) in random_sets.items()}
        linear_pixels = linear_random = finetune_random = {}
        if e.linear_probe or e.finetune is not None:
            linear_pixels, _ = linear_probe_top1(pixel_bank, s.bank_labels, pixel_sets)
        if e.linear_probe:
            linear_random, _ = linear_probe_top1(bank, s.bank_labels, random_sets)
        if e.finetune is not None:
            # the untrained encoder itself (not its BN-recalibrated copy), as `final` fine-tunes the trained one
            tuned = finetune(
                untrained, b, s.bank_images, s.bank_labels, {"val": (s.val_images, s.val_labels), "test": (s.test_images, s.test_labels)},
                e.finetune, self.resolution, self.mean, self.std, self.num_classes, self.device, c.seed,
            )  # fmt: skip
            finetune_random = tuned.top1
        return Floors(
            knn_pixels["val"], knn_random["val"], knn_pixels["test"], knn_random["test"],
            linear_pixels.get("val"), linear_random.get("val"), linear_pixels.get("test"), linear_random.get("test"),
            finetune_random.get("val"), finetune_random.get("test"),
        )  # fmt: skip


_FLOOR_CACHE: dict[tuple[Any, ...], Floors] = {}
