"""Report figures: each function takes tables and returns PNG bytes (or None: nothing to draw).

Figures are built on ``matplotlib.figure.Figure`` directly (the Agg canvas), never through
pyplot, so no global backend is switched and nothing is left open. Many points go through
one ``scatter`` call and many lines through one ``LineCollection``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .pareto import pareto_mask
from .summary import (
    describe_value,
    fmt_number,
    full_size_value,
    is_accuracy,
    knob_summary,
    label,
    parse_schedule,
    scaled_kind,
)

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


def _png(fig: Figure) -> bytes:
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
        return sorted(distinct, key=lambda v: ([r for r, _ in parse_schedule(v)][::-1], str(v)))
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


# ---------------------------------------------------------------- Pareto front


def pareto_figure(done: pd.DataFrame, accuracy: str, costs: Sequence[str], colour_by: str | None) -> bytes | None:
    """Accuracy against each cost (log x); the 2-D front as a step line, dominated muted."""
    panels = [c for c in costs if c in done and (pd.to_numeric(done[c], errors="coerce") > 0).any()]
    if done.empty or not panels or done[accuracy].notna().sum() == 0:
        return None
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.6 * len(panels) + 1.6, 4.0), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        key = colour_key(done, colour_by)
        for ax, cost in zip(axes, panels):
            x = pd.to_numeric(done[cost], errors="coerce").to_numpy(dtype=float)
            y = done[accuracy].to_numpy(dtype=float)
            ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
            front = pareto_mask(done[ok], {accuracy: "max", cost: "min"}).to_numpy()
            xs, ys, cs = x[ok], _scale(accuracy, y[ok]), key.colours[ok]
            muted = cs[~front].copy()
            muted[:, 3] = 0.3
            ax.scatter(xs[~front], ys[~front], c=muted, s=14, linewidths=0, zorder=2)
            order = np.argsort(xs[front], kind="stable")
            fx, fy = xs[front][order], ys[front][order]
            ax.step(fx, fy, where="post", color="black", linewidth=1.1, zorder=3)
            ax.scatter(fx, fy, c=cs[front][order], s=38, edgecolors="black", linewidths=0.8, zorder=4)
            _log_axis(ax, "x", xs)
            ax.set_xlabel(f"{label(cost)} (log)")
            ax.set_ylabel(_axis_label(accuracy))
            ax.set_title(f"{label(accuracy)} vs {label(cost)}")
        handles = _legend_handles(key) + [
            Line2D([], [], color="black", linewidth=1.1, marker="o", markerfacecolor="white", label="Pareto front"),
            Line2D([], [], linestyle="", marker="o", color=MUTED, alpha=0.4, label="dominated"),
        ]
        fig.legend(handles=handles, loc="outside right upper", title=key.title or None)
        if key.mappable is not None:
            fig.colorbar(key.mappable, ax=axes.tolist(), label=key.title, shrink=0.8)
        return _png(fig)


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
) -> tuple[bytes | None, str]:
    """Accuracy and cost against one knob: mean line, seed spread as error bars, trials as dots."""
    rows = done[done[knob].notna() & done[accuracy].notna()]
    if rows.empty:
        return None, ""
    rows, group_by, note = knob_panel_groups(rows, knob, others)
    order = ordered_values(knob, rows[knob])
    numeric = pd.api.types.is_numeric_dtype(rows[knob]) and not pd.api.types.is_bool_dtype(rows[knob])
    continuous = numeric and len(order) > 12
    if numeric:
        position = {v: float(v) for v in order}
    else:
        position = {v: float(i) for i, v in enumerate(order)}
    x_all = rows[knob].map(position).to_numpy(dtype=float)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(9.5, 3.4), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, column in zip(axes, (accuracy, cost)):
            y_all = _scale(column, rows[column])
            ax.scatter(x_all, y_all, s=9, color=MUTED, alpha=0.35, linewidths=0, zorder=1)
            if not continuous:
                groups = rows.groupby(group_by, sort=True, dropna=False) if group_by else [((), rows)]
                for i, (name, group) in enumerate(groups):
                    stats = knob_summary(group, knob, column).set_index(knob)
                    stats = stats.reindex([v for v in order if v in stats.index])
                    xs = [position[v] for v in stats.index]
                    text = _group_label(group_by, name)
                    ax.errorbar(
                        xs, _scale(column, stats["mean"]), yerr=_scale(column, stats["std"].fillna(0)),
                        marker="o", markersize=4, capsize=3, linewidth=1.3, color=f"C{i % 10}",
                        label=text or "mean ± sd over seeds", zorder=3,
                    )
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
                ax.set_xticks(list(position.values()), [str(v) for v in order])
                if len(order) > 5:
                    ax.tick_params(axis="x", labelrotation=30)
        axes[0].set_title(f"{label(accuracy)} vs {label(knob)}")
        axes[1].set_title(f"{label(cost)} vs {label(knob)}")
        if not continuous:
            axes[0].legend(loc="best")
        return _png(fig), note


def _group_label(group_by: Sequence[str], name) -> str:
    if not group_by:
        return ""
    name = name if isinstance(name, tuple) else (name,)
    return ", ".join(f"{label(c)}={fmt_number(v)}" for c, v in zip(group_by, name))


# ---------------------------------------------------------------- learning curves


def learning_curves_figure(
    epochs: pd.DataFrame, highlight: Mapping[str, str], background: Sequence[str]
) -> bytes | None:
    """kNN accuracy against epoch and cumulative PFLOPs, and loss against epoch.

    ``highlight`` maps trial id -> legend label (drawn in colour); ``background`` trial ids
    are drawn as thin grey lines (one LineCollection per panel).
    """
    wanted = set(highlight) | set(background)
    rows = epochs[epochs["trial_id"].isin(wanted)].sort_values(["trial_id", "epoch"], kind="stable")
    if rows.empty:
        return None
    panels = [("epoch", "knn_top1"), ("train_pflops_cum", "knn_top1"), ("epoch", "loss")]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(13, 3.8), layout="constrained")
        axes = fig.subplots(1, 3)
        groups = {tid: g for tid, g in rows.groupby("trial_id", sort=False)}
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
            ax.autoscale_view()
            ax.set_xlabel("epoch" if xcol == "epoch" else "cumulative train PFLOPs (log)")
            ax.set_ylabel(_axis_label(ycol) if ycol != "loss" else "training loss")
            if xcol == "train_pflops_cum" and (rows[xcol] > 0).any():
                _log_axis(ax, "x", rows[xcol].to_numpy(dtype=float))
        axes[0].set_title("kNN top-1 by epoch")
        axes[1].set_title("kNN top-1 by compute")
        axes[2].set_title("loss by epoch")
        if highlight:
            fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", title="Pareto set")
        return _png(fig)


def _scale_xy(pts: np.ndarray, ycol: str) -> np.ndarray:
    if is_accuracy(ycol) and len(pts):
        pts = pts.copy()
        pts[:, 1] *= 100
    return pts


# ---------------------------------------------------------------- S3L check


def s3l_figure(check: pd.DataFrame, done: pd.DataFrame, accuracy: str) -> bytes | None:
    """Per scaled knob: accuracy as % of the same-seed full-size trial against relative cost.

    Each point is the mean (error bar: standard deviation) over that value's pairs; the
    floors (raw-pixel and random-encoder kNN) are drawn relative to the mean full-size
    accuracy of the panel's pairs.
    """
    if check.empty:
        return None
    knobs = list(pd.unique(check["knob"]))
    floors = {c: done[c].mean() for c in ("knn_pixels_top1", "knn_random_top1") if c in done and done[c].notna().any()}
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(min(4.2 * len(knobs), 13) + 0.5, 3.8), layout="constrained")
        axes = fig.subplots(1, len(knobs), squeeze=False)[0]
        for ax, knob in zip(axes, knobs):
            part = check[check["knob"] == knob]
            stats = part.groupby("value", sort=False).agg(
                cost_ratio=("cost_ratio", "mean"), ratio=("accuracy_ratio", "mean"), sd=("accuracy_ratio", "std")
            )
            full_acc = part["full_accuracy"].mean()
            ax.errorbar(stats["cost_ratio"], 100 * stats["ratio"], yerr=100 * stats["sd"].fillna(0),
                        linestyle="", marker="o", markersize=5, capsize=3, color="C0", label="scaled down")
            ax.scatter([1.0], [100.0], marker="*", s=140, color="C3", zorder=4,
                       label=f"full size ({describe_value(knob, part['full_value'].iloc[0])})")
            for value, row in stats.iterrows():
                ax.annotate(_short(knob, value), (row["cost_ratio"], 100 * row["ratio"]),
                            textcoords="offset points", xytext=(5, 3), fontsize=7)
            for (column, floor), style in zip(floors.items(), ("--", ":")):
                ax.axhline(100 * floor / full_acc, color="0.35", linestyle=style, linewidth=1, label=label(column))
            _log_axis(ax, "x", np.r_[stats["cost_ratio"].to_numpy(dtype=float), 1.0])
            ax.set_xlabel("cost relative to full size (log)")
            ax.set_ylabel(f"{label(accuracy)}, % of full size")
            ax.set_title(label(knob))
        axes[0].legend(loc="lower right")
        return _png(fig)


def _short(knob: str, value) -> str:
    if knob == "resolution_schedule":
        stages = parse_schedule(value)
        return "→".join(str(r) for r, _ in stages) if stages else str(value)
    return fmt_number(value)


# ---------------------------------------------------------------- cost model


def cost_model_figure(errors: pd.DataFrame, key: ColourKey | None = None) -> bytes | None:
    """Measured against predicted train PFLOPs (log-log), the y = x line and a ±10% band."""
    if errors.empty:
        return None
    x = errors["predicted_train_pflops"].to_numpy(dtype=float)
    y = errors["train_pflops"].to_numpy(dtype=float)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(9.5, 3.6), layout="constrained")
        ax, hist = fig.subplots(1, 2)
        lo, hi = min(x.min(), y.min()) / 1.3, max(x.max(), y.max()) * 1.3
        line = np.array([lo, hi])
        ax.plot(line, line, color="black", linewidth=1, label="measured = predicted")
        ax.fill_between(line, line * 0.9, line * 1.1, color="0.85", zorder=0, label="±10%")
        ax.scatter(x, y, s=12, c=key.colours if key is not None else "C0", linewidths=0, alpha=0.8, zorder=2)
        _log_axis(ax, "x", line)
        _log_axis(ax, "y", line)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("predicted train PFLOPs")
        ax.set_ylabel("measured train PFLOPs")
        ax.set_title("cost model: measured vs predicted")
        ax.add_artist(ax.legend(loc="upper left"))
        if key is not None and key.legend:
            ax.legend(handles=_legend_handles(key), loc="lower right", title=key.title)
        hist.hist(100 * errors["error"].to_numpy(dtype=float), bins=min(40, max(5, len(errors) // 3)), color="C0")
        hist.axvline(0, color="black", linewidth=1)
        hist.set_xlabel("measured / predicted − 1 (%)")
        hist.set_ylabel("trials")
        hist.set_title("cost model error")
        return _png(fig)
