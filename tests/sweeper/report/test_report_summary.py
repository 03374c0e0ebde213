import math

import numpy as np
import pandas as pd
import pytest

from sweeper.report import headline, knob_columns, s3l_check, study_objectives
from sweeper.report.summary import describe_value, fmt_pct, full_size_value, parse_schedule

OBJ = {"knn_top1": "max", "train_pflops": "min"}


def results(rows):
    df = pd.DataFrame(rows)
    if "status" not in df:
        df["status"] = "finished"
    if "trial_id" not in df:
        df["trial_id"] = [f"t{i}" for i in range(len(df))]
    return df


def test_headline_best_and_cheapest_within_one_point():
    df = results({
        "knn_top1": [0.900, 0.895, 0.890, 0.889, 0.95, np.nan],
        "train_pflops": [10.0, 4.0, 2.5, 1.0, 0.1, 0.01],
        "status": ["finished"] * 4 + ["failed", "running"],
        "seed": [0, 0, 1, 1, 0, 0],
    })
    h = headline(df, OBJ)
    assert h.best["trial_id"] == "t0"
    # 0.890 is exactly 1 point below the best (inclusive); 0.889 is not within
    assert h.cheapest["trial_id"] == "t2"
    assert h.cost_fraction == pytest.approx(0.25)
    assert h.counts == {"total": 6, "finished": 4, "failed": 1, "running": 1, "pending": 0, "skipped_budget": 0}
    text = " ".join(h.sentences)
    assert "Best kNN top-1: 90.0% (trial t0, seed 0)" in text
    assert "Cheapest within 1 point: 89.0% at 25% of the best trial's train PFLOPs (trial t2, seed 1)" in text
    assert "6 trials: 4 finished, 1 failed, 1 running" in text


def test_headline_ties_at_best_go_to_cheaper_and_knobs_are_named():
    df = results({"knn_top1": [0.8, 0.8], "train_pflops": [2.0, 1.0], "resolution": [28, 14]})
    h = headline(df, OBJ, knobs=["resolution"])
    assert h.best["trial_id"] == "t1"
    assert h.cheapest["trial_id"] == "t1"
    assert "No cheaper trial comes within 1 point" in " ".join(h.sentences)
    assert "resolution 14" in h.sentences[0]


def test_headline_without_finished_trials():
    df = results({"knn_top1": [np.nan, np.nan], "train_pflops": [np.nan] * 2, "status": ["failed", "failed"],
                  "error": ["boom", "bang"]})
    h = headline(df, OBJ)
    assert h.best is None and h.cheapest is None and math.isnan(h.cost_fraction)
    assert h.counts["failed"] == 2
    assert h.sentences[0].startswith("No finished trial")


def test_s3l_check_pairs_same_seed_and_other_knobs_and_states_numbers():
    df = results({
        "resolution_schedule": ["28", "14", "28", "14", "28", "14", "14x8,28x2"],
        "backbone.width": [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0],
        "seed": [0, 0, 1, 1, 0, 0, 0],
        "knn_top1": [0.800, 0.7896, 0.810, 0.7995, 0.70, 0.60, 0.80],
        "train_pflops": [4.0, 1.08, 4.0, 1.08, 1.0, 0.27, 1.6],
    })
    table, sentences = s3l_check(df, ["resolution_schedule", "backbone.width"])
    res = table[table["knob"] == "resolution_schedule"]
    pairs = {(r.value, r.seed, r.context): (r.trial_id, r.full_trial_id) for r in res.itertuples()}
    assert pairs[("14", 0, "width=1")] == ("t1", "t0")
    assert pairs[("14", 1, "width=1")] == ("t3", "t2")
    assert pairs[("14", 0, "width=0.5")] == ("t5", "t4")
    assert pairs[("14x8,28x2", 0, "width=1")] == ("t6", "t0")
    row = res[(res["value"] == "14") & (res["seed"] == 0) & (res["context"] == "width=1")].iloc[0]
    assert row["accuracy_ratio"] == pytest.approx(0.987)
    assert row["accuracy_diff"] == pytest.approx(-0.0104)
    assert row["cost_ratio"] == pytest.approx(0.27)
    # the 14 px sentence averages its three pairs: ratios .987, .98704, .857; costs .27 x3
    ratio = np.mean([0.7896 / 0.8, 0.7995 / 0.81, 0.6 / 0.7])
    s14 = next(s for s in sentences if s.startswith("Pre-training at 14 px reached"))
    assert f"{100 * ratio:.1f}% of the 28 px accuracy" in s14
    assert "at 27% of its cost" in s14 and "mean of 3 same-seed pairs" in s14
    s_sched = next(s for s in sentences if "then" in s)
    assert s_sched.startswith("Pre-training at 14 px for 8 epochs then 28 px for 2 reached 100.0% of the 28 px")
    assert "at 40% of its cost" in s_sched and "one pair" in s_sched
    width = table[table["knob"] == "backbone.width"]
    assert set(width["full_value"]) == {1.0}
    assert any(s.startswith("Width 0.5x reached") for s in sentences)


def test_s3l_check_single_pair_sentence_exactly():
    df = results({
        "resolution": [28, 14],
        "seed": [0, 0],
        "knn_top1": [0.800, 0.7896],
        "train_pflops": [1.0, 0.27],
    })
    table, sentences = s3l_check(df, ["resolution"])
    assert len(table) == 1
    assert sentences == [
        "Pre-training at 14 px reached 98.7% of the 28 px accuracy (-1.0 points) at 27% of its cost "
        "(train PFLOPs; one pair)."
    ]


def test_s3l_check_data_fraction_full_is_one_and_unscaled_knobs_are_ignored():
    df = results({
        "data_fraction": [1.0, 0.1, 0.5, 1.0],
        "method": ["simclr"] * 3 + ["byol"],
        "seed": [0, 0, 0, 0],
        "knn_top1": [0.9, 0.85, 0.88, 0.91],
        "train_pflops": [10.0, 1.0, 5.0, 10.0],
    })
    table, sentences = s3l_check(df, ["data_fraction", "method"])
    assert set(table["knob"]) == {"data_fraction"}  # method is not an S3L size knob
    assert sorted(table["value"]) == [0.1, 0.5]
    assert set(table["full_trial_id"]) == {"t0"}  # same method only
    assert any(s.startswith("10% of the data reached") and "full-data accuracy" in s for s in sentences)


def test_s3l_check_without_pairs_or_with_failed_full_size():
    df = results({
        "resolution": [28, 14], "seed": [0, 0], "knn_top1": [np.nan, 0.7], "train_pflops": [np.nan, 1.0],
        "status": ["failed", "finished"],
    })
    table, sentences = s3l_check(df, ["resolution"])
    assert table.empty and sentences == []
    assert s3l_check(df.iloc[0:0], ["resolution"])[0].empty


def test_full_size_of_a_schedule_is_the_largest_single_stage():
    values = pd.Series(["14x8,32x2", "28", "14"])
    assert full_size_value("resolution_schedule", values) == "28"
    assert full_size_value("data_fraction", pd.Series([0.1, 0.5])) == 0.5
    assert parse_schedule("14x8,28x2") == [(14, 8), (28, 2)]
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


def test_study_objectives_declared_or_default():
    df = pd.DataFrame(columns=["linear_top1", "gpu_hours", "knn_top1", "train_pflops"])
    assert study_objectives({"objectives": {"linear_top1": "max", "gpu_hours": "min"}}, df) == {
        "linear_top1": "max", "gpu_hours": "min"}
    assert study_objectives({}, df) == OBJ
    assert study_objectives({"objectives": {"knn_top1": "sideways"}}, df) == OBJ
