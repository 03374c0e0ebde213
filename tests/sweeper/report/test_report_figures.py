"""What the figures draw, read back from the matplotlib objects (not only that a PNG exists)."""

import pandas as pd

from sweeper.report.build import _curves_section


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
