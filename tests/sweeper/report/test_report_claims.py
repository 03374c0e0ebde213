"""Configurations, per-architecture floors, fair pairs, trend fits and the sentences built on
them, on constructed results tables (no training)."""

import numpy as np
import pandas as pd
import pytest

from sweeper.report.claims import headline, pair_sentence, verdict_line
from sweeper.report.compare import (
    EQUAL_COMPUTE,
    EQUAL_EPOCHS,
    EQUAL_STEPS,
    configurations,
    fair_pairs,
    trend_fits,
)
from sweeper.report.verdict import FAILS, HOLDS, INCONCLUSIVE, NOT_MEANINGFUL

OBJ = {"knn_top1": "max", "train_pflops": "min"}


def table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["trial_id"] = [f"t{i}" for i in range(len(df))]
    df["status"] = "finished"
    return df


def resolution_rows(accuracies: dict[int, list[float]], floors=(0.70, 0.65), test_size=10_000, **extra):
    """One row per (resolution, seed); cost grows with resolution squared."""
    rows = []
    for res, values in accuracies.items():
        for seed, acc in enumerate(values):
            rows.append({"resolution": res, "seed": seed, "knn_top1": acc, "knn_val_top1": acc + 0.001,
                         "train_pflops": (res / 28) ** 2, "knn_pixels_top1": floors[0],
                         "knn_random_top1": floors[1], "test_size": test_size, **extra})
    return rows


def test_three_seeds_with_a_real_three_point_gap_fail_and_a_half_point_gap_holds():
    df = table(resolution_rows({
        28: [0.880, 0.890, 0.885],
        20: [0.876, 0.887, 0.880],  # -0.4 points, same-seed differences tight
        14: [0.851, 0.859, 0.856],  # -2.97 points
    }))
    configs = configurations(df, ["resolution"])
    assert list(configs["n_seeds"]) == [3, 3, 3]
    pairs = fair_pairs(configs, ["resolution"]).set_index("value")
    assert set(pairs["pairing"]) == {EQUAL_EPOCHS}
    assert pairs.loc[14, "diff"] == pytest.approx(-0.089 / 3)
    assert pairs.loc[14, "verdict"] == FAILS and pairs.loc[14, "diff_high"] < -0.01
    assert pairs.loc[20, "verdict"] == HOLDS and pairs.loc[20, "diff_low"] >= -0.01
    assert pairs.loc[20, "cost_ratio"] == pytest.approx((20 / 28) ** 2)
    head = headline(df, OBJ, knobs=["resolution"])
    line = verdict_line(pairs.reset_index(), pd.DataFrame(), head)
    assert line.startswith("Verdict (equal epochs): ")
    assert "pre-training at 14 px fails (-3.0 points" in line
    assert "pre-training at 20 px holds (-0.4 points, 51% of the cost)" in line
    assert "Intervals are 95% t-intervals over seeds (3 per configuration)" in " ".join(head.sentences)


def test_one_seed_uses_the_binomial_error_says_so_and_a_small_gap_is_inconclusive():
    df = table(resolution_rows({28: [0.755], 14: [0.750]}, floors=(0.70, 0.65), test_size=2000))
    head = headline(df, OBJ, knobs=["resolution"])
    text = " ".join(head.sentences)
    assert "one seed, test-set noise only" in text
    assert head.sentences[0].startswith("Best configuration: 75.5% kNN top-1")  # chosen on validation: 75.6% against 75.1%
    assert head.sentences[0].endswith("above the floors of its own architecture (raw-pixel kNN top-1 70.0%; "
                                      "random-encoder kNN top-1 65.0%).")
    assert "binomial standard error of the test accuracy (2,000 test images: about ±1.0 points, ±1.9 at 95%)" in text
    pairs = fair_pairs(configurations(df, ["resolution"]), ["resolution"])
    row = pairs.iloc[0]
    assert row["verdict"] == INCONCLUSIVE
    sentence = pair_sentence(next(pairs.itertuples(index=False)))
    assert "more seed" in sentence and "judging by the test-set noise alone" in sentence
    assert "inconclusive" in verdict_line(pairs, pd.DataFrame(), head)


def test_a_best_number_without_floors_says_that_nothing_shows_it_beats_them():
    df = table(resolution_rows({28: [0.755], 14: [0.750]}, floors=(float("nan"), float("nan")), test_size=2000))
    head = headline(df, OBJ, knobs=["resolution"])
    assert head.floors_beaten  # unknown floors gate nothing
    assert "No floors were recorded for it" in head.sentences[0]
    assert "nothing here shows that it beats raw pixels or an untrained encoder" in head.sentences[0]


def test_all_below_floors_puts_the_floors_first_and_marks_every_pair_not_meaningful():
    # the quickstart: trained encoders at 75.5% or less, raw pixels at 80.6%
    df = table(resolution_rows({28: [0.735], 20: [0.755], 14: [0.752], 10: [0.740]}, floors=(0.806, 0.745),
                               test_size=2000))
    head = headline(df, OBJ, knobs=["resolution"])
    assert not head.floors_beaten
    assert head.sentences[0].startswith("Pre-training did not beat raw pixels here: the best configuration reached 75.5%")
    assert "raw-pixel kNN top-1 80.6%" in head.sentences[0]
    pairs = fair_pairs(configurations(df, ["resolution"]), ["resolution"])
    assert len(pairs) == 3 and (pairs["verdict"] == NOT_MEANINGFUL).all()
    assert "the 28 px arm does not beat raw pixels" in pair_sentence(next(pairs.itertuples(index=False)))
    assert verdict_line(pairs, pd.DataFrame(), head).startswith("Verdict: not meaningful.")


def width_rows(arms: tuple[tuple[float, float, float], ...]) -> list[dict]:
    """Three seeds per (width, accuracy, random-encoder floor); cost = width, raw pixels 0.60."""
    return [{"backbone.width": width, "seed": seed, "knn_top1": acc + 0.002 * seed, "train_pflops": width,
             "knn_pixels_top1": 0.60, "knn_random_top1": random_floor}
            for width, acc, random_floor in arms for seed in range(3)]


def test_floors_are_per_architecture_never_a_mean_over_widths():
    df = table(width_rows(((0.125, 0.72, 0.74), (1.0, 0.90, 0.70))))
    configs = configurations(df, ["backbone.width"]).set_index("backbone.width")
    assert configs.loc[0.125, "knn_random_top1"] == pytest.approx(0.74)  # its own, not the 0.72 mean
    assert configs.loc[1.0, "knn_random_top1"] == pytest.approx(0.70)
    # the narrow arm is below its own random encoder, the wide one well above its own
    head = headline(df, OBJ, knobs=["backbone.width"])
    assert head.floors_beaten and head.best["backbone.width"] == 1.0
    # the same table with full size below its floor: the width comparison is not meaningful
    narrow_full = df.assign(knn_random_top1=np.where(df["backbone.width"] == 1.0, 0.95, 0.60))
    pairs = fair_pairs(configurations(narrow_full, ["backbone.width"]), ["backbone.width"])
    assert pairs.iloc[0]["verdict"] == NOT_MEANINGFUL and pairs.iloc[0]["floor_missed"] == "knn_random_top1"


def test_a_cheapest_configuration_of_another_architecture_is_stated_with_its_own_floors():
    head = headline(table(width_rows(((0.5, 0.896, 0.91), (1.0, 0.90, 0.70)))), OBJ, knobs=["backbone.width"])
    assert head.best["backbone.width"] == 1.0 and head.cheapest["backbone.width"] == 0.5
    assert head.sentences[1].endswith("It is not above the floors of its own architecture "
                                      "(raw-pixel kNN top-1 60.0%; random-encoder kNN top-1 91.0%).")


def test_equal_compute_and_equal_steps_pairings_need_the_arms_for_them():
    rows = []
    # resolution x epochs: 14 px for 16 epochs costs what 28 px costs for 4
    for res, epochs, acc in ((28, 4, 0.85), (14, 4, 0.80), (14, 16, 0.848), (28, 16, 0.88)):
        for seed in range(3):
            rows.append({"resolution": res, "epochs": epochs, "data_fraction": 1.0, "seed": seed,
                         "knn_top1": acc + 0.003 * seed, "train_pflops": (res / 28) ** 2 * epochs,
                         "steps": 100 * epochs})
    # data fraction x epochs: 25% of the data for 16 epochs takes the steps of full data for 4
    for fraction, epochs, acc in ((0.25, 4, 0.78), (0.25, 16, 0.84)):
        for seed in range(3):
            rows.append({"resolution": 28, "epochs": epochs, "data_fraction": fraction, "seed": seed,
                         "knn_top1": acc + 0.003 * seed, "train_pflops": fraction * epochs,
                         "steps": 100 * fraction * epochs})
    df = table(rows)
    knobs = ["resolution", "epochs", "data_fraction"]
    pairs = fair_pairs(configurations(df, knobs), knobs)
    by = {(r.knob, r.value, r.pairing, r.length, r.full_length) for r in pairs.itertuples(index=False)}
    assert ("resolution", 14, EQUAL_EPOCHS, "4 epochs", "4 epochs") in by
    assert ("resolution", 14, EQUAL_COMPUTE, "16 epochs", "4 epochs") in by
    assert ("data_fraction", 0.25, EQUAL_STEPS, "16 epochs", "4 epochs") in by
    compute = pairs[(pairs["pairing"] == EQUAL_COMPUTE) & (pairs["knob"] == "resolution")].iloc[0]
    assert compute["cost_ratio"] == pytest.approx(1.0)
    assert compute["diff"] == pytest.approx(-0.002) and compute["verdict"] == HOLDS
    steps = pairs[pairs["pairing"] == EQUAL_STEPS].iloc[0]
    assert steps["diff"] == pytest.approx(-0.01)
    assert "(equal compute, data fraction=1, 16 epochs against 4 epochs)" in pair_sentence(
        next(pairs[pairs["pairing"] == EQUAL_COMPUTE].itertuples(index=False)))
    # no arm trained longer: no equal-compute or equal-steps pair is invented
    plain = df[df["epochs"] == 4]
    assert set(fair_pairs(configurations(plain, knobs), knobs)["pairing"]) == {EQUAL_EPOCHS}


def test_a_random_search_table_gets_a_fitted_trend_not_an_empty_section():
    rng = np.random.default_rng(1)
    n = 40
    width = np.exp(rng.uniform(np.log(0.125), np.log(1.0), n)).round(4)
    resolution = rng.integers(10, 29, n)
    acc = 0.88 + 0.02 * np.log2(width) + 0.05 * np.log2(resolution / 28) + rng.normal(0, 0.002, n)
    df = table([{"backbone.width": w, "resolution": r, "seed": 0, "knn_top1": a,
                 "train_pflops": w**2 * (r / 28) ** 2, "knn_pixels_top1": 0.6, "knn_random_top1": 0.5}
                for w, r, a in zip(width, resolution, acc)])
    knobs = ["backbone.width", "resolution"]
    trends = trend_fits(df, knobs).set_index("knob")
    assert trends.loc["backbone.width", "per_halving"] == pytest.approx(-0.02, abs=0.003)
    assert trends.loc["backbone.width", "cost_ratio"] == pytest.approx(
        (trends.loc["backbone.width", "small_value"] / trends.loc["backbone.width", "full_value"]) ** 2, rel=1e-6)
    assert trends.loc["backbone.width", "verdict"] == FAILS  # about -6 points over three halvings
    line = verdict_line(pd.DataFrame(), trends.reset_index(), headline(df, OBJ, knobs=knobs))
    assert line.startswith("Verdict (fitted trends): width 0.1324x fails (-5.8 points against width 0.9607x, fitted; ")
    assert "pre-training at 11 px fails" in line


def test_headline_cheapest_within_a_point_ties_and_no_finished_trials():
    df = table(resolution_rows({28: [0.900, 0.902], 20: [0.895, 0.893], 14: [0.890, 0.880]}))
    head = headline(df, OBJ, knobs=["resolution"])
    assert head.best["resolution"] == 28 and head.cheapest["resolution"] == 20
    assert head.cost_fraction == pytest.approx((20 / 28) ** 2)
    assert "Cheapest configuration within 1 point of it: 89.4% (95% CI" in head.sentences[1]
    assert "at 51% of its train PFLOPs (counted) (20 px)" in head.sentences[1]
    assert head.sentences[2] == "6 trials: 6 finished, 0 failed, 0 running."
    assert "with 28 px, chosen on validation kNN top-1, above the floors of its own architecture" in head.sentences[0]
    # selection is on validation: a configuration better on test but worse on validation is not chosen
    swapped = df.assign(knn_val_top1=np.where(df["resolution"] == 20, 0.99, df["knn_val_top1"]))
    assert headline(swapped, OBJ, knobs=["resolution"]).best["resolution"] == 20
    # ties at the best go to the cheaper configuration
    tied = table(resolution_rows({28: [0.9], 14: [0.9]}))
    assert headline(tied, OBJ, knobs=["resolution"]).best["resolution"] == 14
    failed = df.assign(status="failed", knn_top1=np.nan)
    none = headline(failed, OBJ, knobs=["resolution"])
    assert none.best is None and none.sentences[0] == "No finished trial has a kNN top-1 value yet."
    assert none.counts["failed"] == 6
