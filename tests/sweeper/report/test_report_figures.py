"""What the figures draw, read back from the matplotlib objects (not only that a PNG exists)."""

import re

import numpy as np
import pandas as pd
from matplotlib.collections import PathCollection

from sweeper.report.build import _curves_section, _front_trials, _knob_section, _pareto_section
from sweeper.report.compare import configurations
from sweeper.report.figures import FLOOR_COLOUR


def _curves_inputs():
    trials = pd.DataFrame({
        "trial_id": ["a", "b"], "status": "finished", "resolution": [14, 8], "seed": 0,
        "knn_top1": [0.79, 0.74], "knn_val_top1": [0.80, 0.75], "train_pflops": [1.0, 0.3],
        "knn_pixels_top1": [0.76, 0.76], "knn_random_top1": [0.71, 0.71],  # test floors
        "knn_val_pixels_top1": [0.55, 0.55], "knn_val_random_top1": [0.50, 0.50],  # validation floors, far below
    })
    rows = []
    for tid, top in (("a", 0.80), ("b", 0.75), ("stale", 0.60)):  # "stale": a trial no longer in the study
        for epoch in (1, 2, 3):
            rows.append({"trial_id": tid, "epoch": epoch, "step": 10 * epoch, "resolution": 14, "loss": 3.0 - epoch * 0.1,
                         "lr": 0.1, "knn_val_top1": top - 0.02 * (3 - epoch), "train_pflops_cum": 0.1 * epoch,
                         "wall_s_cum": epoch, "img_per_s": 100.0})
    return trials, pd.DataFrame(rows)


def test_learning_curves_draw_current_trials_with_validation_floors_inside_the_axes():
    trials, epochs = _curves_inputs()
    drawn = {}

    def add_figure(name, fig, alt, caption=""):
        drawn["fig"], drawn["caption"] = fig, caption
        return caption

    _curves_section(trials, epochs, pd.Series([True, True]), ["resolution"], add_figure)
    fig = drawn["fig"]
    ax = fig.axes[0]  # accuracy by epoch
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert sorted(round(float(line.get_ydata()[-1]), 1) for line in curves) == [75.0, 80.0]  # a and b, not the stale trial
    assert not ax.collections or all(len(c.get_segments()) == 0 for c in ax.collections)
    floors = sorted({round(float(line.get_ydata()[0]), 1) for line in ax.get_lines() if len(line.get_xdata()) == 2})
    assert floors == [50.0, 55.0]  # the validation floors beside validation curves, not the test ones (71, 76)
    low, high = ax.get_ylim()
    assert low < 50.0 and high > 80.0 and low < 50.0 - 0.4  # every floor line inside the frame, with a margin
    assert "kNN floors of the coloured trials, on the same validation split" in drawn["caption"]


# ---------------------------------------------------------------- the Pareto front and the floors per architecture
# Four widths, two seeds each. By configuration mean the front is widths 0.25, 0.5 and 2.0 (1.0
# is dominated by 0.5); by single trials it would not be (width 1.0's seed 1 beats everything
# cheaper than width 2.0), so a figure or table that fronts trials instead of means is caught.
# The untrained-encoder floor differs by architecture, the raw-pixel one does not.
WIDTHS = {0.25: (1.0, (0.69, 0.71), 0.40), 0.5: (2.0, (0.77, 0.79), 0.42), 1.0: (4.0, (0.70, 0.82), 0.45),
          2.0: (8.0, (0.79, 0.81), 0.47)}  # width: (train PFLOPs, knn_top1 by seed, knn_random_top1)
FRONT_WIDTHS = [0.25, 0.5, 2.0]
PIXEL_FLOOR = 0.60


def _width_trials() -> pd.DataFrame:
    rows = []
    for width, (pflops, accuracies, random_floor) in WIDTHS.items():
        for seed, top1 in enumerate(accuracies):
            rows.append({"trial_id": f"w{width}-s{seed}", "status": "finished", "backbone.width": width, "seed": seed,
                         "knn_top1": top1, "knn_val_top1": top1 - 0.01, "train_pflops": pflops * (1 + 0.01 * seed),
                         "gpu_fraction": 0.0, "knn_pixels_top1": PIXEL_FLOOR, "knn_random_top1": random_floor,
                         "resumed_from_corrupt": False})
    return pd.DataFrame(rows)


def _capture() -> tuple[dict, object]:
    drawn: dict = {}

    def add_figure(name, fig, alt, caption=""):
        drawn[name] = fig
        return caption

    return drawn, add_figure


def _floor_levels(ax) -> dict[str, list[float]]:
    """The horizontal floor lines of an axes by line style, in percent."""
    levels: dict[str, list[float]] = {}
    for line in ax.get_lines():
        if line.get_color() == FLOOR_COLOUR and len(set(line.get_ydata())) == 1:
            levels.setdefault(line.get_linestyle(), []).append(round(float(line.get_ydata()[0]), 6))
    return {style: sorted(values) for style, values in levels.items()}


def _pareto_drawn() -> tuple[object, str, pd.DataFrame]:
    """The Pareto section's figure, its HTML (with the table of the front's trials) and the configurations table."""
    df = _width_trials()
    objectives = {"knn_top1": "max", "train_pflops": "min"}
    knobs = ["backbone.width"]
    front = _front_trials(df, df, knobs, objectives)
    drawn, add_figure = _capture()
    section = _pareto_section(df, df, front, objectives, knobs, add_figure)
    return drawn["pareto.png"], section.body, configurations(df, knobs, "knn_top1", "train_pflops")


def test_the_pareto_front_drawn_is_the_front_of_the_table():
    fig, html, configs = _pareto_drawn()
    ax = fig.axes[0]
    listed = set(re.findall(r"w[0-9.]+-s[0-9]", html.split('id="pareto-set"')[1]))
    table_front = sorted({float(tid[1:].split("-")[0]) for tid in listed})
    assert table_front == FRONT_WIDTHS and len(listed) == 2 * len(FRONT_WIDTHS)  # every seed of each front configuration
    expected = configs.set_index("backbone.width").loc[table_front]
    want = sorted(zip(expected["cost"].round(6), (100 * expected["accuracy"]).round(6)))
    (step,) = [line for line in ax.get_lines() if line.get_drawstyle() == "steps-post"]
    assert sorted(zip(np.round(step.get_xdata(), 6), np.round(step.get_ydata(), 6))) == want
    assert list(step.get_xdata()) == sorted(step.get_xdata())  # drawn left to right
    big = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_sizes()) and c.get_sizes()[0] == 42]
    assert len(big) == 1 and sorted(map(tuple, np.round(big[0].get_offsets().data, 6))) == want  # the front's markers, on the line
    dominated = [line for line in ax.get_lines() if line.get_marker() == "o" and line.get_linestyle() == "None"]
    rest = configs[~configs["backbone.width"].isin(table_front)]
    assert len(dominated) == 1
    assert sorted(zip(np.round(dominated[0].get_xdata(), 6), np.round(dominated[0].get_ydata(), 6))) == sorted(
        zip(rest["cost"].round(6), (100 * rest["accuracy"]).round(6)))


def test_the_pareto_figures_floor_band_spans_the_tables_floors_across_architectures():
    fig, _, configs = _pareto_drawn()
    levels = _floor_levels(fig.axes[0])
    random_floors = 100 * configs["knn_random_top1"]
    assert sorted(set(random_floors.round(6))) == [40.0, 42.0, 45.0, 47.0]  # the table's floor per architecture
    assert levels[":"] == [round(random_floors.min(), 6), round(random_floors.max(), 6)]  # the band's edges
    assert levels["--"] == [100 * PIXEL_FLOOR]  # one raw-pixel floor for every architecture: one line


def test_the_knob_figure_draws_each_architectures_floors_from_the_table():
    df = _width_trials()
    drawn, add_figure = _capture()
    _knob_section(df, ["backbone.width"], "knn_top1", "train_pflops", add_figure)
    (fig,) = drawn.values()
    ax = fig.axes[0]  # accuracy against width
    configs = configurations(df, ["backbone.width"], "knn_top1", "train_pflops").set_index("backbone.width")
    floors = {line.get_linestyle(): np.round(line.get_ydata(), 6).tolist() for line in ax.get_lines()
              if line.get_color() == FLOOR_COLOUR}
    order = sorted(WIDTHS)
    assert floors[":"] == (100 * configs.loc[order, "knn_random_top1"]).round(6).tolist() == [40.0, 42.0, 45.0, 47.0]
    assert floors["--"] == [100 * PIXEL_FLOOR] * len(order)
