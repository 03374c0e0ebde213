"""Which floors gate which accuracy: the result columns of each evaluation protocol's floors.

A floor is what a protocol scores with no pre-training (`s3l_core.protocol.Evaluator.floors`
measures them). Torch-free, so the record parser and the report read it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FloorColumns:
    """The result columns of one protocol's floors: raw pixels and an untrained network, test and validation."""

    pixels: str
    random: str
    val_pixels: str
    val_random: str


# By the protocol that produced an accuracy. Fine-tuning has no
# "fine-tuned raw pixels"; its pixel floor is the supervised linear classifier on raw pixels.
PROTOCOL_FLOORS: dict[str, FloorColumns] = {
    "knn": FloorColumns("knn_pixels_top1", "knn_random_top1", "knn_val_pixels_top1", "knn_val_random_top1"),
    "linear": FloorColumns("linear_pixels_top1", "linear_random_top1", "linear_val_pixels_top1", "linear_val_random_top1"),
    "finetune": FloorColumns("linear_pixels_top1", "finetune_random_top1", "linear_val_pixels_top1", "finetune_val_random_top1"),
}
FLOOR_METRICS: tuple[str, ...] = tuple(dict.fromkeys(
    column for f in PROTOCOL_FLOORS.values() for column in (f.pixels, f.random, f.val_pixels, f.val_random)))


def protocol_of(accuracy: str) -> str:
    """The protocol of an accuracy column (`linear_val_top1` -> `linear`); kNN unless named otherwise."""
    return next((name for name in PROTOCOL_FLOORS if accuracy.startswith(name + "_")), "knn")


def floors_of(accuracy: str) -> FloorColumns:
    return PROTOCOL_FLOORS[protocol_of(accuracy)]
