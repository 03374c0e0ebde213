import pandas as pd

from sweeper.report import knob_columns, study_objectives
from sweeper.report.summary import describe_value, fmt_pct, full_size_value
from sweeper.study.resolution_schedule import ResolutionSchedule

OBJ = {"knn_top1": "max", "train_pflops": "min"}


def test_full_size_of_a_schedule_is_the_largest_single_stage():
    values = pd.Series([ResolutionSchedule((14, 32), (8, 2), "epochs"), ResolutionSchedule((28,)), ResolutionSchedule((14,))])
    assert full_size_value("resolution_schedule", values) == ResolutionSchedule((28,))
    assert full_size_value("data_fraction", pd.Series([0.1, 0.5])) == 0.5
    assert ResolutionSchedule.from_label("14x8,28x2") == ResolutionSchedule((14, 28), (8, 2), "epochs")
    assert ResolutionSchedule.from_label("8x10s,14x10s") == ResolutionSchedule((8, 14), (10, 10), "steps")
    assert describe_value("resolution_schedule", ResolutionSchedule((8, 14), (10, 10), "steps")) == "8 px for 10 steps then 14 px for 10"
    assert describe_value("backbone.depth", 18) == "depth 18"
    assert fmt_pct(0.27) == "27%" and fmt_pct(0.082) == "8.2%" and fmt_pct(0.0042) == "0.42%"


def test_knob_columns_map_dotted_keys_and_stage_lists():
    df = pd.DataFrame(columns=["resolution", "resolution_schedule", "backbone.width", "optimizer.lr", "seed"])
    study = {"space": {
        "resolution": {"choice": [14, 28, [{"resolution": 14, "epochs": 40}, {"resolution": 28, "epochs": 10}]]},
        "backbone.width": {"uniform": [0.25, 1.0]},
        "optimizer.lr": {"loguniform": [0.05, 1.0]},
        "seed": {"grid": [0, 1]},
        "not.a.column": {"grid": [1]},
    }}
    assert knob_columns(study, df) == ["resolution_schedule", "backbone.width", "optimizer.lr"]
    plain = {"space": {"resolution": {"grid": [8, 28]}, "width": {"grid": [0.5, 1]}}}
    assert knob_columns(plain, df) == ["resolution", "backbone.width"]
    assert knob_columns({}, df) == []
    steps = pd.DataFrame(columns=["steps", "steps_config"])  # `steps` knob: the configured length, not steps taken
    assert knob_columns({"space": {"steps": {"grid": [100, 200]}}}, steps) == ["steps_config"]


def test_study_objectives_declared_or_default():
    df = pd.DataFrame(columns=["linear_top1", "gpu_hours", "knn_top1", "train_pflops"])
    assert study_objectives({"objectives": {"linear_top1": "max", "gpu_hours": "min"}}, df) == {
        "linear_top1": "max", "gpu_hours": "min"}
    assert study_objectives({}, df) == OBJ
    assert study_objectives({"objectives": {"knn_top1": "sideways"}}, df) == OBJ


def test_a_scaled_down_share_is_never_rounded_up_to_the_full_size():
    from sweeper.report.summary import fmt_pct

    assert fmt_pct(0.999) == "99.9%" and fmt_pct(0.9999) == "99.99%" and fmt_pct(0.996) == "99.6%"
    assert fmt_pct(1.0) == "100%" and fmt_pct(0.98) == "98%"
    assert describe_value("data_fraction", 0.999) == "99.9% of the data"


def test_an_accuracy_interval_stays_within_0_and_100_percent():
    from sweeper.report.stats import mean_interval

    two_seeds = mean_interval([0.85, 0.91])  # the t interval over two seeds ran 70.3-105.7%
    assert two_seeds.high == 1.0 and 0.0 <= two_seeds.low < two_seeds.mean
    assert mean_interval([0.01], 100).low == 0.0
