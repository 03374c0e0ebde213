"""Report figures: each function takes tables and returns a Figure (or None: nothing to draw);
``to_png`` renders one. Legends sit outside the plotting areas.

Figures are built on ``matplotlib.figure.Figure`` directly (the Agg canvas), never through
pyplot, so no global backend is switched and nothing is left open. Many points go through
one ``scatter`` call and many lines through one ``LineCollection``.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib
import matplotlib.patches
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .compare import EQUAL_COMPUTE, EQUAL_EPOCHS, EQUAL_STEPS, TrendModel, configurations
from .layout import mark_count_axis, renderer_of, spread_annotations
from .pareto import pareto_mask
from .summary import (
    describe_value,
    fmt_number,
    full_size_value,
    is_accuracy,
    label,
    scaled_kind,
)
from .verdict import MARGIN, floor_columns

DPI = 100
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "text.parse_math": False,  # knob values are data: a "$" must not start mathtext
}
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power_of_ten(x: float, _pos=None) -> str:
    """'10⁻³' for exact powers of ten, '' otherwise (plain text: mathtext is off)."""
    if x <= 0:
        return ""
    exponent = round(np.log10(x))
    return "10" + str(exponent).translate(_SUPERSCRIPT) if abs(x / 10.0**exponent - 1) < 1e-6 else ""
MUTED = (0.55, 0.55, 0.55)
MAX_LEGEND = 10  # more distinct knob values than this: a colour bar instead of a legend


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _scale(column: str, values: pd.Series | np.ndarray) -> np.ndarray:
    """Values as plotted: accuracies in percent."""
    v = np.asarray(values, dtype=float)
    return 100 * v if is_accuracy(column) else v


def _log_axis(ax, axis: str, values: np.ndarray) -> None:
    """Log scale with readable ticks whatever the span of ``values``.

    Over two decades or more: matplotlib's decades, minor ticks unlabelled. Over one to
    two: 1-2-5 ticks. Under one decade: a few evenly spaced round numbers.
    """
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_minor_formatter(matplotlib.ticker.NullFormatter())
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    span = v.max() / v.min() if v.size else 1.0
    short = matplotlib.ticker.FuncFormatter(lambda x, _: fmt_number(float(f"{x:.3g}")))
    if span < 10:
        target.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=4))
        target.set_minor_locator(matplotlib.ticker.NullLocator())
        target.set_major_formatter(short)
    elif span < 100:
        target.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        target.set_major_formatter(short)
    else:
        target.set_major_formatter(matplotlib.ticker.FuncFormatter(_power_of_ten))


def _axis_label(column: str) -> str:
    return f"{label(column)} (%)" if is_accuracy(column) else label(column)


# ---------------------------------------------------------------- colours


@dataclass
class ColourKey:
    """Colour per row plus what explains it: legend entries or a colour bar."""

    colours: np.ndarray
    title: str = ""
    legend: list[tuple[str, tuple]] = field(default_factory=list)
    mappable: matplotlib.cm.ScalarMappable | None = None


def ordered_values(column: str, values: pd.Series) -> list:
    """Distinct knob values in reading order (numbers ascending, schedules by resolution)."""
    distinct = list(pd.unique(values.dropna()))
    if column == "resolution_schedule":
        return sorted(distinct)
    try:
        return sorted(distinct, key=float)
    except (TypeError, ValueError):
        return sorted(distinct, key=str)


def colour_key(df: pd.DataFrame, column: str | None) -> ColourKey:
    n = len(df)
    if column is None or column not in df or df[column].isna().all():
        return ColourKey(np.tile(matplotlib.colors.to_rgba("C0"), (n, 1)))
    values = df[column]
    order = ordered_values(column, values)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    ordinal = numeric or column == "resolution_schedule"
    if len(order) <= MAX_LEGEND:
        if ordinal:
            cmap = matplotlib.colormaps["viridis"]
            palette = [cmap(x) for x in np.linspace(0.05, 0.85, max(len(order), 2))]
        else:
            palette = [matplotlib.colormaps["tab10"](i % 10) for i in range(len(order))]
        lookup = {v: palette[i] for i, v in enumerate(order)}
        colours = np.array([lookup.get(v, (*MUTED, 1.0)) for v in values.to_numpy()], dtype=float).reshape(n, 4)
        legend = [(describe_value(column, v) if scaled_kind(column) else fmt_number(v), lookup[v]) for v in order]
        return ColourKey(colours, label(column), legend)
    if numeric:
        v = values.to_numpy(dtype=float)
        positive = v[np.isfinite(v)]
        log = positive.size and positive.min() > 0 and positive.max() / positive.min() >= 20
        norm = LogNorm(positive.min(), positive.max()) if log else Normalize(np.nanmin(v), np.nanmax(v))
        mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis")
        colours = mappable.to_rgba(np.nan_to_num(v, nan=np.nanmin(v)))
        return ColourKey(np.asarray(colours, dtype=float), label(column), mappable=mappable)
    codes = {v: i for i, v in enumerate(order)}
    cmap = matplotlib.colormaps["tab20"]
    colours = np.array([cmap(codes.get(v, 0) % 20) for v in values.to_numpy()], dtype=float).reshape(n, 4)
    return ColourKey(colours, f"{label(column)} ({len(order)} values)")


def _legend_handles(key: ColourKey) -> list[Line2D]:
    return [
        Line2D([], [], marker="o", linestyle="", markersize=6, markerfacecolor=c, markeredgecolor="none", label=t)
        for t, c in key.legend
    ]


# ---------------------------------------------------------------- shared pieces


# every floor column (test, and the kNN validation floors the learning curves draw): line style and words
FLOOR_STYLES = {
    "knn_pixels_top1": ("--", "raw-pixel kNN floor"), "knn_random_top1": (":", "untrained-encoder kNN floor"),
    "linear_pixels_top1": ("--", "raw-pixel linear-probe floor"),
    "linear_random_top1": (":", "untrained-encoder linear-probe floor"),
    "finetune_random_top1": (":", "fine-tuning from random init (floor)"),
    "knn_val_pixels_top1": ("--", "raw-pixel kNN floor"), "knn_val_random_top1": (":", "untrained-encoder kNN floor"),
}
FLOOR_COLOUR = "0.3"
PAIRING_COLOURS = {EQUAL_EPOCHS: "C0", EQUAL_COMPUTE: "C1", EQUAL_STEPS: "C2"}


def _outside_legend(fig: Figure, handles: list, title: str | None = None) -> None:
    """Legends go outside every plotting area, so they can never cover a data point."""
    if handles:
        fig.legend(handles=handles, loc="outside right upper", title=title or None)


def _yerr(configs: pd.DataFrame) -> np.ndarray:
    """Asymmetric error bars (percent) from a configurations table; unknown intervals draw none."""
    low = (100 * (configs["accuracy"] - configs["low"])).fillna(0).to_numpy(dtype=float)
    high = (100 * (configs["high"] - configs["accuracy"])).fillna(0).to_numpy(dtype=float)
    return np.vstack([low, high])


def _floor_bands(ax, configs: pd.DataFrame) -> list:
    """Floors as horizontal bands spanning their per-architecture values (a line when all agree)."""
    handles = []
    for column, (style, words) in FLOOR_STYLES.items():
        values = 100 * pd.to_numeric(configs.get(column, pd.Series(dtype=float)), errors="coerce").dropna()
        if values.empty:
            continue
        lo, hi = float(values.min()), float(values.max())
        if hi - lo > 1e-9:
            ax.axhspan(lo, hi, color=FLOOR_COLOUR, alpha=0.12, linewidth=0, zorder=0)
            words += f" ({lo:.1f}–{hi:.1f}% by architecture)"
        ax.axhline(lo, color=FLOOR_COLOUR, linestyle=style, linewidth=1, zorder=0)
        if hi - lo > 1e-9:
            ax.axhline(hi, color=FLOOR_COLOUR, linestyle=style, linewidth=1, zorder=0)
        handles.append(Line2D([], [], color=FLOOR_COLOUR, linestyle=style, linewidth=1, label=words))
    return handles


def _seeds_words(configs: pd.DataFrame) -> str:
    n = configs["n_seeds"]
    if n.max() <= 1:
        return "one seed: bars are the test set's binomial 95% interval"
    spread = f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"
    return f"mean of {spread} seeds, bars: 95% t-interval"


def _wrap(text: str, width: int = 10) -> str:
    return textwrap.fill(text.replace(",", ", "), width) if len(text) > width else text


# ---------------------------------------------------------------- Pareto front


def pareto_figure(done: pd.DataFrame, knobs: Sequence[str], accuracy: str, costs: Sequence[str],
                  colour_by: str | None) -> Figure | None:
    """Accuracy against each cost (log x): configuration means with intervals, the front over them
    as a step line, dominated configurations grey, single trials faint, floors as bands."""
    panels = [c for c in costs if c in done and (pd.to_numeric(done[c], errors="coerce") > 0).any()]
    if done.empty or not panels or done[accuracy].notna().sum() == 0:
        return None
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.6 * len(panels) + 2.8, 4.0), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        floor_handles: list = []
        key = ColourKey(np.empty((0, 4)))
        for ax, cost in zip(axes, panels):
            configs = configurations(done, knobs, accuracy, cost)
            configs = configs[(configs["cost"] > 0) & configs["accuracy"].notna()].reset_index(drop=True)
            trials = done[pd.to_numeric(done[cost], errors="coerce") > 0]
            ax.scatter(trials[cost].astype(float), _scale(accuracy, trials[accuracy]), s=8, color=MUTED, alpha=0.3,
                       linewidths=0, zorder=1)
            front = pareto_mask(configs, {"accuracy": "max", "cost": "min"}).to_numpy()
            key = colour_key(configs, colour_by)
            x, y, err = configs["cost"].to_numpy(dtype=float), 100 * configs["accuracy"].to_numpy(dtype=float), _yerr(configs)
            ax.errorbar(x[~front], y[~front], yerr=err[:, ~front], fmt="o", markersize=4, color=MUTED, alpha=0.8,
                        elinewidth=0.8, capsize=0, zorder=2)
            order = np.argsort(x[front], kind="stable")
            fx, fy = x[front][order], y[front][order]
            ax.step(fx, fy, where="post", color="black", linewidth=1.1, zorder=3)
            ax.errorbar(fx, fy, yerr=err[:, front][:, order], fmt="none", ecolor="black", elinewidth=1, capsize=2,
                        zorder=3)
            ax.scatter(fx, fy, c=key.colours[front][order], s=42, edgecolors="black", linewidths=0.8, zorder=4)
            floor_handles = _floor_bands(ax, configs) or floor_handles
            _log_axis(ax, "x", x)
            ax.set_xlabel(f"{label(cost)} (log)")
            ax.set_ylabel(_axis_label(accuracy))
            ax.set_title(f"{label(accuracy)} vs {label(cost)}")
        handles = _legend_handles(key) + [
            Line2D([], [], color="black", linewidth=1.1, marker="o", markerfacecolor="white",
                   label="front: configuration means"),
            Line2D([], [], linestyle="", marker="o", color=MUTED, label="dominated configuration"),
            Line2D([], [], linestyle="", marker="o", markersize=3, color=MUTED, alpha=0.4, label="single trial"),
            *floor_handles,
        ]
        _outside_legend(fig, handles, key.title)
        if key.mappable is not None:
            fig.colorbar(key.mappable, ax=axes.tolist(), label=key.title, shrink=0.8, location="bottom")
        return fig


# ---------------------------------------------------------------- one knob


def knob_panel_groups(
    done: pd.DataFrame, knob: str, others: Sequence[str], max_lines: int = 6
) -> tuple[pd.DataFrame, list[str], str]:
    """Rows and line-grouping columns for a knob panel, plus a note of what was held fixed.

    Lines are the combinations of the other knobs when there are few; otherwise one line
    per value of the other knob with fewest values, the rest fixed at full size (or their
    most common value).
    """
    others = [o for o in others if o in done and done[o].nunique(dropna=False) > 1]
    if not others:
        return done, [], ""
    combos = done[others].drop_duplicates()
    if len(combos) <= max_lines:
        return done, list(others), ""
    by = min(others, key=lambda o: done[o].nunique())
    if done[by].nunique() > max_lines:
        return done, [], "mean over all other knob settings"
    subset, fixed = done, []
    for other in others:
        if other == by:
            continue
        ref = full_size_value(other, subset[other]) if scaled_kind(other) else subset[other].mode().iloc[0]
        if ref is None:
            ref = subset[other].mode().iloc[0]
        subset = subset[subset[other] == ref]
        fixed.append(f"{label(other)}={fmt_number(ref)}")
    if subset.empty:
        return done, [], "mean over all other knob settings"
    return subset, [by], "other knobs fixed at " + ", ".join(fixed)


def knob_figure(
    done: pd.DataFrame, knob: str, others: Sequence[str], accuracy: str, cost: str
) -> tuple[Figure | None, str]:
    """Accuracy and cost against one knob: configuration means with their intervals, the floors
    of each setting, single trials as faint dots; legends outside the panels."""
    rows = done[done[knob].notna() & done[accuracy].notna()]
    if rows.empty:
        return None, ""
    rows, group_by, note = knob_panel_groups(rows, knob, others)
    order = ordered_values(knob, rows[knob])
    numeric = pd.api.types.is_numeric_dtype(rows[knob]) and not pd.api.types.is_bool_dtype(rows[knob])
    continuous = numeric and len(order) > 12
    position = {v: float(v) for v in order} if numeric else {v: float(i) for i, v in enumerate(order)}
    x_all = rows[knob].map(position).to_numpy(dtype=float)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(10.5, 3.5), layout="constrained")
        axes = fig.subplots(1, 2)
        handles: list = []
        all_configs = configurations(rows, [*group_by, knob], accuracy, cost)
        for ax, column in zip(axes, (accuracy, cost)):
            ax.scatter(x_all, _scale(column, rows[column]), s=9, color=MUTED, alpha=0.35, linewidths=0, zorder=1)
            if continuous:
                continue
            groups = rows.groupby(group_by, sort=True, dropna=False) if group_by else [((), rows)]
            for i, (name, group) in enumerate(groups):
                configs = configurations(group, [knob], accuracy, cost)
                configs = configs.set_index(knob).reindex([v for v in order if v in set(configs[knob])])
                xs = [position[v] for v in configs.index]
                colour = f"C{i % 10}"
                if column == accuracy:
                    ax.errorbar(xs, 100 * configs["accuracy"], yerr=_yerr(configs), marker="o", markersize=4,
                                capsize=3, linewidth=1.3, color=colour, zorder=3)
                else:
                    ax.plot(xs, configs["cost"], marker="o", markersize=4, linewidth=1.3, color=colour, zorder=3)
                if column == accuracy:
                    text = _group_label(group_by, name) or "configuration mean"
                    handles.append(Line2D([], [], color=colour, marker="o", markersize=4, label=text))
            if column == accuracy:
                for floor in floor_columns(accuracy):
                    style, words = FLOOR_STYLES[floor]
                    if floor not in rows:
                        continue
                    per_value = pd.to_numeric(rows[floor], errors="coerce").groupby(rows[knob]).mean().reindex(order)
                    if per_value.notna().any():
                        ax.plot([position[v] for v in order], 100 * per_value.to_numpy(dtype=float), linestyle=style,
                                color=FLOOR_COLOUR, linewidth=1, zorder=2)
                        handles.append(Line2D([], [], color=FLOOR_COLOUR, linestyle=style, label=words))
            ax.set_ylabel(_axis_label(column))
            ax.set_xlabel(label(knob))
            if column == cost and (rows[cost] > 0).any():
                _log_axis(ax, "y", rows[cost].to_numpy(dtype=float))
            if numeric:
                vals = np.array(list(position.values()))
                if vals.size and vals.min() > 0 and vals.max() / vals.min() >= 4:
                    ax.set_xscale("log")
                if not continuous:
                    ax.set_xticks(vals, [fmt_number(v) for v in order])
                    ax.minorticks_off()
            else:
                ax.set_xticks(list(position.values()), [_wrap(str(v)) for v in order])
        axes[0].set_title(f"{label(accuracy)} vs {label(knob)}")
        axes[1].set_title(f"{label(cost)} vs {label(knob)}")
        handles.append(Line2D([], [], linestyle="", marker="o", markersize=3, color=MUTED, alpha=0.5,
                              label="single trial"))
        title = _seeds_words(all_configs) if len(all_configs) else None
        _outside_legend(fig, handles, "\n".join(textwrap.wrap(title, 30)) if title else None)
        return fig, note


def _group_label(group_by: Sequence[str], name) -> str:
    if not group_by:
        return ""
    name = name if isinstance(name, tuple) else (name,)
    return ", ".join(f"{label(c)}={fmt_number(v)}" for c, v in zip(group_by, name))


# ---------------------------------------------------------------- learning curves


def learning_curves_figure(
    epochs: pd.DataFrame, highlight: Mapping[str, str], background: Sequence[str],
    floors: Mapping[str, tuple[float, float]] | None = None, accuracy: str = "knn_val_top1",
) -> Figure | None:
    """Validation kNN accuracy against epoch and cumulative PFLOPs, and loss against epoch.

    ``highlight`` maps trial id -> legend label (drawn in colour); ``background`` trial ids
    are thin grey lines (one LineCollection per panel); ``floors`` maps a floor column to the
    (lowest, highest) value among the highlighted trials, drawn on the accuracy panels.
    """
    wanted = set(highlight) | set(background)
    rows = epochs[epochs["trial_id"].isin(wanted)].sort_values(["trial_id", "epoch"], kind="stable")
    if rows.empty:
        return None
    panels = [("epoch", accuracy), ("train_pflops_cum", accuracy), ("epoch", "loss")]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(14, 3.8), layout="constrained")
        axes = fig.subplots(1, 3)
        groups = {tid: g for tid, g in rows.groupby("trial_id", sort=False)}
        handles: list = []
        for ax, (xcol, ycol) in zip(axes, panels):
            segments = []
            for tid in background:
                g = groups.get(tid)
                if g is None:
                    continue
                pts = g[[xcol, ycol]].to_numpy(dtype=float)
                pts = pts[np.isfinite(pts).all(axis=1)]
                if len(pts) > 1:
                    segments.append(_scale_xy(pts, ycol))
            if segments:
                ax.add_collection(LineCollection(segments, colors=[(*MUTED, 0.35)], linewidths=0.7, zorder=1))
            for i, (tid, text) in enumerate(highlight.items()):
                g = groups.get(tid)
                if g is None:
                    continue
                pts = g[[xcol, ycol]].to_numpy(dtype=float)
                pts = _scale_xy(pts[np.isfinite(pts).all(axis=1)], ycol)
                if len(pts):
                    ax.plot(pts[:, 0], pts[:, 1], marker="o", markersize=2.5, linewidth=1.4,
                            color=f"C{i % 10}", label=text, zorder=3)
            if ycol != "loss":
                for column, (lo, hi) in (floors or {}).items():
                    style, _ = FLOOR_STYLES[column]
                    for value in {lo, hi}:
                        ax.axhline(100 * value, color=FLOOR_COLOUR, linestyle=style, linewidth=1, zorder=0)
            ax.autoscale_view()  # with its margins: every floor line inside the frame
            ax.set_xlabel("epoch" if xcol == "epoch" else "cumulative train PFLOPs, counted (log)")
            ax.set_ylabel(_axis_label(ycol) if ycol != "loss" else "training loss")
            if xcol == "epoch":
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
                mark_count_axis(ax.xaxis)
            if xcol == "train_pflops_cum" and (rows[xcol] > 0).any():
                _log_axis(ax, "x", rows[xcol].to_numpy(dtype=float))
        axes[0].set_title(f"{label(accuracy)} by epoch")
        axes[1].set_title(f"{label(accuracy)} by compute")
        axes[2].set_title("loss by epoch")
        handles = list(axes[0].get_legend_handles_labels()[0])
        if background:
            handles.append(Line2D([], [], color=MUTED, alpha=0.6, linewidth=0.7, label="other trials"))
        for column, (lo, hi) in (floors or {}).items():
            style, words = FLOOR_STYLES[column]
            span = f"{100 * lo:.1f}%" if abs(hi - lo) < 1e-9 else f"{100 * lo:.1f}–{100 * hi:.1f}%"
            handles.append(Line2D([], [], color=FLOOR_COLOUR, linestyle=style, label=f"{words} (validation, {span})"))
        _outside_legend(fig, handles, "Pareto set" if highlight else None)
        return fig


def _scale_xy(pts: np.ndarray, ycol: str) -> np.ndarray:
    if is_accuracy(ycol) and len(pts):
        pts = pts.copy()
        pts[:, 1] *= 100
    return pts


# ---------------------------------------------------------------- S3L check


def s3l_figure(pairs: pd.DataFrame) -> Figure | None:
    """Per scaled knob: accuracy difference to full size (points, 95% interval) against relative
    cost, one colour per pairing; the -1 point line is the verdict rule's threshold. The y-axis
    fits the data; a floor outside it is named in the panel's title."""
    if pairs.empty:
        return None
    knobs = list(pd.unique(pairs["knob"]))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(min(4.4 * len(knobs), 13.5) + 2.6, 3.9), layout="constrained")
        axes = fig.subplots(1, len(knobs), squeeze=False)[0]
        used: dict[str, str] = {}
        floors_drawn: set[str] = set()
        for ax, knob in zip(axes, knobs):
            part = pairs[pairs["knob"] == knob]
            x = part["cost_ratio"].to_numpy(dtype=float)
            y = 100 * part["diff"].to_numpy(dtype=float)
            low = 100 * part["diff_low"].to_numpy(dtype=float)
            high = 100 * part["diff_high"].to_numpy(dtype=float)
            err = np.vstack([np.nan_to_num(y - low), np.nan_to_num(high - y)])
            primary = part["primary"].to_numpy(dtype=bool)
            meaningful = part["full_floors_beaten"].to_numpy(dtype=bool)
            for pairing, colour in PAIRING_COLOURS.items():
                mask = (part["pairing"] == pairing).to_numpy()
                if not mask.any():
                    continue
                # other settings of the other knobs: faint dots; the comparison the verdict uses: bars
                ax.scatter(x[mask & ~primary], y[mask & ~primary], color=colour, alpha=0.25, s=10, linewidths=0,
                           zorder=2)
                main = mask & primary
                ax.errorbar(x[main], y[main], yerr=err[:, main], fmt="none", ecolor=colour, elinewidth=1, capsize=3,
                            zorder=3)
                ax.scatter(x[main & meaningful], y[main & meaningful], color=colour, s=30, zorder=4)
                ax.scatter(x[main & ~meaningful], y[main & ~meaningful], facecolors="white", edgecolors=colour, s=30,
                           zorder=4)
                used[pairing] = colour
            ax.axhline(0, color="black", linewidth=0.8, zorder=1)
            ax.axhline(-100 * MARGIN, color="C3", linestyle="--", linewidth=1, zorder=1)
            span = np.r_[low[primary & np.isfinite(low)], high[primary & np.isfinite(high)], y[np.isfinite(y)], 0.0,
                         -100 * MARGIN]
            lo, hi = float(span.min()), float(span.max())
            pad = max(0.15 * (hi - lo), 0.3)
            ax.set_ylim(lo - pad, hi + pad)
            drawn, outside = _floor_notes(ax, part, lo - pad, hi + pad)
            floors_drawn |= drawn
            for value, xv, yv, main in zip(part["value"], x, y, primary):
                if main and np.isfinite(xv) and np.isfinite(yv):
                    ax.annotate(_wrap(_short(knob, value), 12), (xv, yv), textcoords="offset points", xytext=(6, 4),
                                fontsize=7)
            _log_axis(ax, "x", np.r_[x[np.isfinite(x) & (x > 0)], 1.0])
            ax.set_xlabel("cost relative to full size (log)")
            ax.set_ylabel("accuracy − full size (points)")
            ax.set_title("\n".join([label(knob), *outside]))
        renderer = renderer_of(fig)
        for ax in axes:
            spread_annotations(ax, renderer)
        handles = [Line2D([], [], color=c, marker="o", linestyle="", label=f"{p} (95% CI)") for p, c in used.items()]
        if not pairs["primary"].all():
            handles.append(Line2D([], [], color="0.5", alpha=0.35, marker="o", markersize=3, linestyle="",
                                  label="same, at other settings\nof the other knobs"))
        if not pairs.loc[pairs["primary"], "full_floors_beaten"].all():
            handles.append(Line2D([], [], color="white", marker="o", markeredgecolor="0.3", linestyle="",
                                  label="full size below its floors:\nnot meaningful"))
        handles += [
            Line2D([], [], color="C3", linestyle="--", label="−1 point: verdict threshold"),
            *(Line2D([], [], color=FLOOR_COLOUR, linestyle=FLOOR_STYLES[c][0],
                     label=f"{FLOOR_STYLES[c][1]},\nrelative to full size") for c in FLOOR_STYLES if c in floors_drawn),
        ]
        _outside_legend(fig, handles, "pairing")
        return fig


def _floor_notes(ax, part: pd.DataFrame, y_lo: float, y_hi: float) -> tuple[set[str], list[str]]:
    """Each floor relative to full size: a line when it is inside the axis (its column is
    returned, for the legend), else words for the panel's title (edges hold no data to cover)."""
    drawn, outside = set(), []
    for column, (style, words) in FLOOR_STYLES.items():
        if f"full_{column}" not in part:
            continue
        rel = 100 * (part[f"full_{column}"] - part["full_accuracy"])
        rel = rel[np.isfinite(rel.to_numpy(dtype=float))]
        if rel.empty:
            continue
        value = float(rel.mean())
        if y_lo <= value <= y_hi:
            ax.axhline(value, color=FLOOR_COLOUR, linestyle=style, linewidth=1, zorder=0)
            drawn.add(column)
        else:
            outside.append(f"{words} {value:+.1f} ({'below' if value < y_lo else 'above'})")
    return drawn, outside


def _short(knob: str, value) -> str:
    if knob == "resolution_schedule":
        return value.arrow()
    return fmt_number(value)


def trend_figure(model: TrendModel) -> Figure | None:
    """Per knob: accuracy adjusted to the other knobs' mean against the knob (log), the fitted
    line and its 95% band: the random / Optuna counterpart of the S3L check."""
    columns, fit = model.columns, model.accuracy
    X = np.column_stack([np.log2(model.trials[c].astype(float)) for c in columns])
    y = model.trials[model.reported].astype(float).to_numpy()
    means = X.mean(axis=0)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(min(4.2 * len(columns), 13.5) + 2.6, 3.8), layout="constrained")
        axes = fig.subplots(1, len(columns), squeeze=False)[0]
        for j, (ax, column) in enumerate(zip(axes, columns)):
            adjusted = y - sum(fit.coef[1 + k] * (X[:, k] - means[k]) for k in range(len(columns)) if k != j)
            ax.scatter(2 ** X[:, j], 100 * adjusted, s=12, color="C0", alpha=0.6, linewidths=0, zorder=2)
            grid = np.linspace(X[:, j].min(), X[:, j].max(), 50)
            design = np.tile(means, (grid.size, 1))
            design[:, j] = grid
            mean, half = fit.predict(design)
            ax.plot(2 ** grid, 100 * mean, color="black", linewidth=1.2, zorder=3)
            ax.fill_between(2 ** grid, 100 * (mean - half), 100 * (mean + half), color="0.75", alpha=0.5,
                            linewidth=0, zorder=1)
            _log_axis(ax, "x", 2 ** X[:, j])
            ax.set_xlabel(f"{label(column)} (log)")
            ax.set_ylabel(f"{_axis_label(model.reported)}, adjusted")
            ax.set_title(label(column))
        _outside_legend(fig, [
            Line2D([], [], linestyle="", marker="o", color="C0", alpha=0.6, label="trial, other knobs\nadjusted to their mean"),
            Line2D([], [], color="black", label="fitted trend (log2 of each knob)"),
            matplotlib.patches.Patch(color="0.75", alpha=0.5, label="95% band of the fit"),
        ])
        return fig


# ---------------------------------------------------------------- cost model


def cost_model_figure(errors: pd.DataFrame, key: ColourKey | None = None) -> Figure | None:
    """Counted against predicted train PFLOPs (log-log), the y = x line and a ±10% band."""
    if errors.empty:
        return None
    x = errors["predicted_train_pflops"].to_numpy(dtype=float)
    y = errors["train_pflops"].to_numpy(dtype=float)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(9.5, 3.6), layout="constrained")
        ax, hist = fig.subplots(1, 2)
        lo, hi = min(x.min(), y.min()) / 1.3, max(x.max(), y.max()) * 1.3
        line = np.array([lo, hi])
        ax.plot(line, line, color="black", linewidth=1, label="counted = predicted")
        ax.fill_between(line, line * 0.9, line * 1.1, color="0.85", zorder=0, label="±10%")
        ax.scatter(x, y, s=12, c=key.colours if key is not None else "C0", linewidths=0, alpha=0.8, zorder=2)
        _log_axis(ax, "x", line)
        _log_axis(ax, "y", line)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("predicted train PFLOPs")
        ax.set_ylabel("counted train PFLOPs")
        ax.set_title("cost model: counted vs predicted")
        handles = ax.get_legend_handles_labels()[0] + (_legend_handles(key) if key is not None else [])
        _outside_legend(fig, handles, key.title if key is not None and key.legend else None)
        hist.hist(100 * errors["error"].to_numpy(dtype=float), bins=min(40, max(5, len(errors) // 3)), color="C0")
        hist.axvline(0, color="black", linewidth=1)
        hist.set_xlabel("counted / predicted − 1 (%)")
        hist.set_ylabel("trials")
        hist.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        mark_count_axis(hist.yaxis)
        hist.set_title("cost model error")
        return fig
