"""A trial's pre-training resolution as structured data: one stage, or S3L's schedule of stages.

The results tables store it in three columns (`resolution_stage_px`, `resolution_stage_length`,
`resolution_stage_unit`) beside the human label `resolution_schedule` (`14x8,28x2`), and the
report reads the columns back into this one type, so no reader has to parse the label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import total_ordering
from typing import Any

STAGE_COLUMNS = ("resolution_stage_px", "resolution_stage_length", "resolution_stage_unit")


@total_ordering
@dataclass(frozen=True, eq=True)
class ResolutionSchedule:
    """Stage resolutions in training order and each stage's length in `unit` ("epochs" or "steps";
    None for a single resolution, whose length is the trial's own)."""

    resolutions: tuple[int, ...]
    lengths: tuple[int, ...] = ()
    unit: str | None = None

    @classmethod
    def from_config(cls, resolution: int | Sequence[Mapping[str, Any]]) -> ResolutionSchedule:
        """From a record's config: an int, or its stages (normalised to epochs or steps each)."""
        if isinstance(resolution, int):
            return cls((resolution,))
        stages = list(resolution)
        unit = "epochs" if all(s.get("epochs") is not None for s in stages) else "steps"
        return cls(tuple(int(s["resolution"]) for s in stages), tuple(int(s[unit]) for s in stages), unit)

    @classmethod
    def from_columns(cls, px: Any, lengths: Any, unit: Any) -> ResolutionSchedule | None:
        """From one row's stage columns; None when the row has none (a failed or foreign row)."""
        if px is None or (isinstance(px, float) and math.isnan(px)):
            return None
        resolutions = tuple(int(r) for r in px)
        if len(resolutions) == 1:
            return cls(resolutions)
        return cls(resolutions, tuple(int(n) for n in lengths), str(unit))

    @classmethod
    def from_label(cls, label: str) -> ResolutionSchedule | None:
        """Tables written before the stage columns existed carry only the label: `14x8,28x2`,
        `8x10s,14x10s` or `28`. None for anything else."""
        resolutions, lengths = [], []
        for part in str(label).split(","):
            res, _, length = part.strip().partition("x")
            try:
                resolutions.append(int(float(res)))
                if length:
                    lengths.append(int(length.removesuffix("s")))
            except ValueError:
                return None
        if len(resolutions) == 1:
            return cls((resolutions[0],))
        if len(lengths) != len(resolutions):
            return None
        return cls(tuple(resolutions), tuple(lengths), "steps" if str(label).endswith("s") else "epochs")

    @property
    def staged(self) -> bool:
        """More than one stage: a scaled-down recipe, never a full-size point."""
        return len(self.resolutions) > 1

    @property
    def largest(self) -> int:
        return max(self.resolutions)

    def columns(self) -> dict[str, Any]:
        """This schedule's cells of a results row."""
        return {
            "resolution_stage_px": list(self.resolutions),
            "resolution_stage_length": list(self.lengths) if self.staged else None,
            "resolution_stage_unit": self.unit,
        }

    @property
    def label(self) -> str:
        if not self.staged:
            return str(self.resolutions[0])
        suffix = "s" if self.unit == "steps" else ""
        return ",".join(f"{r}x{n}{suffix}" for r, n in zip(self.resolutions, self.lengths))

    def words(self) -> str:
        """'14 px'; '14 px for 8 epochs then 28 px for 2'."""
        if not self.staged:
            return f"{self.resolutions[0]} px"
        parts = [f"{r} px for {n}" for r, n in zip(self.resolutions, self.lengths)]
        parts[0] += f" {self.unit}"
        return " then ".join(parts)

    def arrow(self) -> str:
        """'8→14': the stages' resolutions, for a tick label."""
        return "→".join(str(r) for r in self.resolutions)

    def reading_order(self) -> tuple:
        """Sort key: by the last (largest) stage first, so a schedule sits beside its full-size arm."""
        return (tuple(reversed(self.resolutions)), self.lengths)

    def __lt__(self, other: object) -> bool:  # tables group and sort by this knob
        if not isinstance(other, ResolutionSchedule):
            return NotImplemented
        return self.reading_order() < other.reading_order()

    def __str__(self) -> str:
        return self.label


def schedule_label(resolution: int | Sequence[Mapping[str, Any]]) -> str:
    """`28`; `14x8,28x2` for 14 px for 8 epochs then 28 px for 2; `8x10s,14x10s` for stages in steps."""
    return ResolutionSchedule.from_config(resolution).label


def stage_spec_label(stages: Sequence[Mapping[str, Any]]) -> str:
    """A schedule as a study writes it, before it is resolved: `14x80%,28x20%` for stages given as
    fractions of the run, `8x10st` in steps, `14x8,28x2` in epochs."""
    if all("epochs" in s for s in stages):
        return schedule_label(stages)
    return ",".join(f"{s['resolution']}x{s['fraction']:.0%}" if "fraction" in s else f"{s['resolution']}x{s.get('steps', '?')}st" for s in stages)
