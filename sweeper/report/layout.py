"""Checks of a drawn figure a reader would otherwise catch by eye: legends over data points,
fractional ticks on axes that count things, and labels on top of each other.

Each check lays the figure out with the Agg renderer and compares display-space extents
(``get_window_extent``), so it sees exactly what the PNG shows.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import Collection
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

COUNT = "count"  # gid of an axis whose ticks count trials or epochs: integer ticks only


def mark_count_axis(axis: Axis) -> None:
    axis.set_gid(COUNT)


def renderer_of(fig: Figure):
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _data_points(ax) -> np.ndarray:
    """Display coordinates of every drawn data point (markers and line vertices) in ``ax``."""
    chunks = []
    for line in ax.get_lines():
        if not line.get_visible() or line.get_transform() != ax.transData or not len(line.get_xdata()):
            continue
        chunks.append(ax.transData.transform(np.column_stack(line.get_data()).astype(float)))
    for collection in ax.collections:
        if isinstance(collection, Collection) and collection.get_visible():
            offsets = np.asarray(collection.get_offsets(), dtype=float)
            if offsets.size and collection.get_offset_transform() == ax.transData:
                chunks.append(ax.transData.transform(offsets))
    if not chunks:
        return np.empty((0, 2))
    points = np.vstack(chunks)
    points = points[np.isfinite(points).all(axis=1)]
    inside = ax.get_window_extent()
    keep = ((points[:, 0] >= inside.x0) & (points[:, 0] <= inside.x1)
            & (points[:, 1] >= inside.y0) & (points[:, 1] <= inside.y1))
    return points[keep]


def _legends(fig: Figure) -> list[Legend]:
    legends = list(fig.legends)
    for ax in fig.axes:
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
    return legends


def legend_overlaps(fig: Figure) -> list[str]:
    """One line per legend that covers data points of any axes."""
    renderer = renderer_of(fig)
    problems = []
    for legend in _legends(fig):
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            points = _data_points(ax)
            covered = int(((points[:, 0] >= box.x0) & (points[:, 0] <= box.x1)
                           & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1)).sum())
            if covered:
                problems.append(f"legend '{legend.get_title().get_text() or 'untitled'}' covers {covered} data "
                                f"points of axes '{ax.get_title()}'")
    return problems


def fractional_count_ticks(fig: Figure) -> list[str]:
    """One line per count axis with a tick (inside its view) that is not a whole number."""
    renderer_of(fig)
    problems = []
    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_gid() != COUNT:
                continue
            lo, hi = sorted(limits)
            ticks = [t for t in axis.get_majorticklocs() if lo - 1e-9 <= t <= hi + 1e-9]
            fractional = [round(float(t), 6) for t in ticks if not math.isclose(t, round(t), abs_tol=1e-9)]
            if fractional:
                problems.append(f"axes '{ax.get_title()}': fractional ticks {fractional} on a count axis")
    return problems


def _boxes(texts: list[Text], renderer) -> list[Bbox]:
    return [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text().strip()]


def _overlapping(boxes: list[Bbox]) -> int:
    return sum(1 for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b))


def label_overlaps(fig: Figure) -> list[str]:
    """One line per axes whose point annotations, or x tick labels, overlap each other."""
    renderer = renderer_of(fig)
    problems = []
    for ax in fig.axes:
        notes = [c for c in ax.get_children() if isinstance(c, Annotation)]
        if n := _overlapping(_boxes(notes, renderer)):
            problems.append(f"axes '{ax.get_title()}': {n} overlapping annotation pairs")
        if n := _overlapping(_boxes(list(ax.get_xticklabels()), renderer)):
            problems.append(f"axes '{ax.get_title()}': {n} overlapping x tick label pairs")
    return problems


def layout_problems(fig: Figure) -> list[str]:
    return [*legend_overlaps(fig), *fractional_count_ticks(fig), *label_overlaps(fig)]


def spread_annotations(ax, renderer, step_px: float = 9.0, tries: int = 12) -> None:
    """Nudge the annotations of ``ax`` apart vertically until none overlaps one placed before it."""
    placed: list[Bbox] = []
    for note in (c for c in ax.get_children() if isinstance(c, Annotation) and c.get_text().strip()):
        box = note.get_window_extent(renderer)
        for attempt in range(tries):
            if not any(box.overlaps(other) for other in placed):
                break
            x, y = note.xyann
            note.xyann = (x, y + (1 if attempt % 2 == 0 else -1) * step_px * (attempt + 1))
            box = note.get_window_extent(renderer)
        placed.append(box)
