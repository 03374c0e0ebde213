"""The verdict rule: does a scaled-down setting hold its accuracy against full size?

Given the 95% interval of (scaled-down accuracy - full-size accuracy):
- holds: the interval lies above -MARGIN (no loss of more than 1 point is plausible);
- fails: the interval lies below -MARGIN (a loss of more than 1 point is all that is plausible);
- inconclusive: the interval straddles -MARGIN.
A comparison whose full-size arm does not beat its own floors (by more than its interval) is
"not meaningful": there was no learned accuracy to keep. The floors are those of the
accuracy's own protocol (`s3l_core.floors`): kNN on raw pixels and on an untrained encoder of
the same architecture for a kNN accuracy, the same linear probe on both for a linear-probe
accuracy, and for fine-tuning the linear probe on raw pixels and the same fine-tuning from
random initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from s3l_core.floors import PROTOCOL_FLOORS, floors_of

from .stats import BINOMIAL, Interval, seeds_to_settle

MARGIN = 0.01  # 1 point of accuracy

HOLDS = "holds"
FAILS = "fails"
INCONCLUSIVE = "inconclusive"
NOT_MEANINGFUL = "not meaningful"

RULE = (
    "Rule: a scaled-down setting holds when the 95% interval of its accuracy minus the full-size "
    "accuracy excludes a loss of more than 1 point, fails when the interval lies entirely below "
    "-1 point, and is inconclusive otherwise; a comparison whose full-size arm does not beat its own "
    "floors (the same evaluation on raw pixels and on an untrained encoder of the same architecture; for "
    "fine-tuning, a linear probe on raw pixels and the same fine-tuning from random initialisation) is "
    "not meaningful. "
    "Intervals are t-intervals over seeds, or with one seed the binomial standard error of the test "
    "accuracy (test-set noise only)."
)

# every test-split floor column, pixels before untrained, and what each floor is in words
FLOOR_COLUMNS = tuple(dict.fromkeys(c for f in PROTOCOL_FLOORS.values() for c in (f.pixels, f.random)))
FLOOR_WORDS = {
    "knn_pixels_top1": "raw pixels", "knn_random_top1": "an untrained encoder",
    "linear_pixels_top1": "raw pixels", "linear_random_top1": "an untrained encoder",
    "finetune_random_top1": "the same fine-tuning from random initialisation",
}
PIXEL_FLOORS = frozenset(f.pixels for f in PROTOCOL_FLOORS.values())  # drawn dashed; untrained ones dotted


def floor_columns(accuracy: str) -> tuple[str, str]:
    """The test-split floors that gate `accuracy` (any split of it): its own protocol's."""
    f = floors_of(accuracy)
    return f.pixels, f.random


def floors_in(index) -> list[str]:
    """The floor columns a configuration or trials table carries (one protocol's)."""
    return [c for c in FLOOR_COLUMNS if c in index]


def classify(diff: Interval, margin: float = MARGIN) -> str:
    if not diff.known:
        return INCONCLUSIVE
    if diff.low >= -margin:
        return HOLDS
    if diff.high < -margin:
        return FAILS
    return INCONCLUSIVE


def floors_beaten(accuracy: Interval, floors: Mapping[str, float]) -> tuple[bool, str | None]:
    """(whether the interval lies above every known floor, the first floor it does not beat),
    `floors` by column in the order they are tried.

    Unknown floors (NaN, an older store) gate nothing. Without an interval the mean must
    beat the floor.
    """
    low = accuracy.low if accuracy.known else accuracy.mean
    for column, floor in floors.items():
        if floor is not None and math.isfinite(floor) and not (math.isfinite(low) and low > floor):
            return False, column
    return True, None


def settle_words(diff: Interval, margin: float = MARGIN) -> str:
    """How many more seeds would likely settle an inconclusive comparison, in words."""
    more = seeds_to_settle(diff, -margin)
    if more is None:
        return "the difference sits at the 1-point threshold; many more seeds would be needed"
    basis = ", judging by the test-set noise alone" if diff.method == BINOMIAL else ""
    return f"about {more} more seed{'s' if more != 1 else ''} per arm would likely settle it{basis}"
