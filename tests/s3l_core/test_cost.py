"""FLOPs counts against numbers worked out by hand, so an error by a constant factor everywhere
(which every ratio test would miss) fails here."""

import pytest

from s3l_core.config import BackboneConfig
from s3l_core.cost import forward_flops_per_image
from s3l_core.evaluate import knn_flops


def _conv(cin: int, cout: int, k: int, side: int) -> int:
    """Multiply-accumulates of one k x k convolution producing a side x side map."""
    return cin * cout * k * k * side * side


def test_resnet18_cifar_forward_at_32px_is_the_textbook_1_11_gflops():
    # CIFAR stem (3x3, stride 1, no max-pool): 0.56 G multiply-accumulates, 2 FLOPs each
    stem = _conv(3, 64, 3, 32)
    stage1 = 4 * _conv(64, 64, 3, 32)
    later = sum(_conv(c, 2 * c, 3, s) + _conv(2 * c, 2 * c, 3, s) + _conv(c, 2 * c, 1, s) + 2 * _conv(2 * c, 2 * c, 3, s)
                for c, s in ((64, 16), (128, 8), (256, 4)))
    macs = stem + stage1 + later
    assert macs == 555_417_600
    assert forward_flops_per_image(BackboneConfig(depth=18, width=1.0, stages=4), 3, "cifar", 32) == 2 * macs


def test_a_narrow_three_stage_resnet10_on_one_channel_matches_its_hand_count():
    # width 0.25: 16, 32, 64 channels; ResNet-10 has one block per stage; 14 px -> 14, 7, 4
    macs = (_conv(1, 16, 3, 14) + 2 * _conv(16, 16, 3, 14)
            + _conv(16, 32, 3, 7) + _conv(32, 32, 3, 7) + _conv(16, 32, 1, 7)
            + _conv(32, 64, 3, 4) + _conv(64, 64, 3, 4) + _conv(32, 64, 1, 4))
    assert forward_flops_per_image(BackboneConfig(depth=10, width=0.25, stages=3), 1, "cifar", 14) == 2 * macs


def test_knn_similarity_flops_are_two_per_multiply_accumulate():
    assert knn_flops(1000, 200, 64) == pytest.approx(2 * 1000 * 200 * 64)
