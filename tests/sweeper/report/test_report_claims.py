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
from sweeper.report.snapshot import normalize_results
from sweeper.report.verdict import FAILS, HOLDS, INCONCLUSIVE, NOT_MEANINGFUL

OBJ = {"knn_top1": "max", "train_pflops": "min"}


def table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["trial_id"] = [f"t{i}" for i in range(len(df))]
    df["status"] = "finished"
    return normalize_results(df)  # as the report reads a store: schedules become ResolutionSchedule


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
    assert "No floors of its protocol were recorded for it" in head.sentences[0]
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


def test_each_objective_is_gated_by_the_floors_of_its_own_protocol():
    """A linear-probe accuracy level with a linear probe on raw pixels learned nothing, however
    far above the raw-pixel kNN floor it sits; fine-tuning is gated by fine-tuning from scratch."""
    rows = resolution_rows({28: [0.840, 0.842, 0.841], 14: [0.835, 0.836, 0.834]}, floors=(0.76, 0.70))
    for row in rows:
        row.update(linear_top1=row["knn_top1"], linear_val_top1=row["knn_val_top1"], linear_pixels_top1=0.845,
                   linear_random_top1=0.80, finetune_top1=row["knn_top1"] + 0.05, finetune_val_top1=row["knn_val_top1"] + 0.05,
                   finetune_random_top1=0.895)
    df = table(rows)
    knn = headline(df, OBJ, knobs=["resolution"])
    assert knn.floors_beaten and "raw-pixel kNN top-1 76.0%" in knn.sentences[0]
    linear = headline(df, {"linear_top1": "max", "train_pflops": "min"}, knobs=["resolution"])
    assert not linear.floors_beaten
    assert linear.sentences[0].startswith("Pre-training did not beat raw pixels here")
    assert "raw-pixel linear top-1 84.5%; random-encoder linear top-1 80.0%" in linear.sentences[0]
    assert "kNN" not in linear.sentences[0]
    pairs = fair_pairs(configurations(df, ["resolution"], "linear_top1"), ["resolution"])
    assert pairs.iloc[0]["verdict"] == NOT_MEANINGFUL and pairs.iloc[0]["floor_missed"] == "linear_pixels_top1"
    assert pairs.iloc[0]["full_linear_pixels_top1"] == pytest.approx(0.845) and "full_knn_pixels_top1" not in pairs
    tuned = headline(df, {"finetune_val_top1": "max", "train_pflops": "min"}, knobs=["resolution"])
    assert tuned.floors_beaten is False
    assert "the same fine-tuning from random initialisation" in tuned.sentences[0]
    assert "fine-tune from random init top-1 89.5%" in tuned.sentences[0]
    trends = trend_fits(df, ["resolution"], "linear_top1")
    assert trends.iloc[0]["floor_missed"] == "linear_pixels_top1"
    # a store from before the linear floors were measured: nothing gates, and the report says so
    old = df.drop(columns=["linear_pixels_top1", "linear_random_top1"])
    unknown = headline(old, {"linear_top1": "max", "train_pflops": "min"}, knobs=["resolution"])
    assert unknown.floors_beaten and "No floors of its protocol were recorded for it" in unknown.sentences[0]


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
    df = table(resolution_rows({28: [0.900, 0.902, 0.901], 20: [0.897, 0.899, 0.898], 14: [0.890, 0.880, 0.885]}))
    head = headline(df, OBJ, knobs=["resolution"])
    assert head.best["resolution"] == 28 and head.cheapest["resolution"] == 20
    assert head.cost_fraction == pytest.approx((20 / 28) ** 2)
    assert ("Cheapest configuration that holds within 1 point of it (by the verdict rule on validation kNN top-1): "
            "89.8% kNN top-1 (95% CI") in head.sentences[1]
    assert "at 51% of its train PFLOPs (counted) (20 px)" in head.sentences[1]
    assert head.sentences[2] == "9 trials: 9 finished, 0 failed, 0 running."
    # "within 1 point" is the verdict rule's interval test, not a mean: two seeds too noisy to hold
    noisy = table(resolution_rows({28: [0.900, 0.902], 20: [0.895, 0.893]}))
    assert headline(noisy, OBJ, knobs=["resolution"]).cheapest["resolution"] == 28
    assert "No cheaper configuration holds within 1 point of it" in headline(noisy, OBJ, knobs=["resolution"]).sentences[1]
    # it is decided on validation: 14 px level with full size on validation (not on test) is the cheapest
    level = df.copy()
    level.loc[level["resolution"] == 14, "knn_val_top1"] = level.loc[level["resolution"] == 28, "knn_val_top1"].to_numpy()
    assert headline(level, OBJ, knobs=["resolution"]).cheapest["resolution"] == 14
    # and only a strictly cheaper configuration counts
    same_cost = df.assign(train_pflops=1.0)
    assert headline(same_cost, OBJ, knobs=["resolution"]).cheapest["resolution"] == 28
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
    assert none.counts["failed"] == 9


def schedule_rows(arms: dict[str, tuple[list[float], int, float]]) -> list[dict]:
    """Rows per (schedule label, seed): (accuracies by seed, total epochs, cost)."""
    return [{"resolution_schedule": label, "resolution": max(int(p.split("x")[0]) for p in label.split(",")),
             "resolution_stages": label.count(",") + 1, "epochs": epochs, "seed": seed, "knn_top1": acc,
             "knn_val_top1": acc + 0.001, "train_pflops": cost, "knn_pixels_top1": 0.70, "knn_random_top1": 0.65,
             "test_size": 10_000}
            for label, (accs, epochs, cost) in arms.items() for seed, acc in enumerate(accs)]


def test_a_schedule_is_paired_at_equal_total_epochs_and_its_label_is_true_of_both_arms():
    # S3L's recipe: 8 px for 12 epochs then 14 px for 4 (16 in all) against 14 px for 16
    df = table(schedule_rows({"14": ([0.80, 0.81, 0.805], 16, 1.0), "8x12,14x4": ([0.799, 0.809, 0.804], 16, 0.49)}))
    configs = configurations(df, ["resolution_schedule"])
    pairs = fair_pairs(configs, ["resolution_schedule"])
    assert list(pairs["pairing"]) == [EQUAL_EPOCHS] and pairs.iloc[0]["verdict"] == HOLDS
    line = verdict_line(pairs, pd.DataFrame(), headline(df, OBJ, knobs=["resolution_schedule"]))
    assert "pre-training at 8 px for 12 epochs then 14 px for 4 holds (-0.1 points, 49% of the cost)" in line
    # stages of their own epochs that sum to 7 against a 4-epoch full-size arm are not "equal epochs"
    longer = table(schedule_rows({"28": ([0.80, 0.81, 0.805], 4, 1.0), "8x4,28x3": ([0.79, 0.80, 0.795], 7, 0.83)}))
    pairs = fair_pairs(configurations(longer, ["resolution_schedule"]), ["resolution_schedule"])
    assert list(pairs["pairing"]) == [EQUAL_COMPUTE]
    assert "(equal compute, 7 epochs against 4 epochs)" in pair_sentence(next(pairs.itertuples(index=False)))
    # and when the compute is not equal either, there is no fair pair to state
    far = table(schedule_rows({"28": ([0.80, 0.81, 0.805], 4, 1.0), "8x4,28x9": ([0.79, 0.80, 0.795], 13, 2.5)}))
    assert fair_pairs(configurations(far, ["resolution_schedule"]), ["resolution_schedule"]).empty


def test_trend_fits_leave_schedules_out_of_the_resolution_axis():
    """A schedule's `resolution` column is its largest stage: fitted as such it would move the
    full-size end of the trend. With it, the 8 px claim must be what it is without it."""
    rows = [{"resolution": res, "resolution_schedule": str(res), "resolution_stages": 1, "backbone.width": w,
             "seed": 0, "knn_top1": 0.80 - 0.03 * (28 / res - 1) / 2.5 + 0.01 * w, "train_pflops": (res / 28) ** 2 * w,
             "knn_pixels_top1": 0.5, "knn_random_top1": 0.4, "test_size": 10_000}
            for res in (8, 14, 28) for w in (0.25, 0.5, 1.0)]
    plain = trend_fits(table(rows), ["resolution_schedule", "backbone.width"]).set_index("knob")
    with_schedule = rows + [{**rows[-1], "resolution": 28, "resolution_schedule": "14x8,28x2", "resolution_stages": 2,
                             "knn_top1": 0.70, "train_pflops": 0.3}]
    fitted = trend_fits(table(with_schedule), ["resolution_schedule", "backbone.width"]).set_index("knob")
    assert fitted.loc["resolution", "diff"] == pytest.approx(plain.loc["resolution", "diff"])
    assert fitted.loc["resolution", "cost_ratio"] == pytest.approx(plain.loc["resolution", "cost_ratio"])
    from sweeper.report.claims import schedules_left_out_sentence
    from sweeper.report.compare import trend_model

    model = trend_model(table(with_schedule), ["resolution_schedule", "backbone.width"])
    assert [s.label for s in model.schedules["resolution_schedule"]] == ["14x8,28x2"]
    assert schedules_left_out_sentence(model.schedules).startswith(
        "1 trial pre-trained with a resolution schedule (14 px for 8 epochs then 28 px for 2) is left out of these fits")


def test_every_configuration_below_one_of_its_floors_is_named_with_that_floor():
    # the quickstart's case: 14 px above raw pixels (76.0%), 8 px below them
    df = table(resolution_rows({14: [0.786], 8: [0.7355]}, floors=(0.7605, 0.712), test_size=2000))
    head = headline(df, OBJ, knobs=["resolution"])
    assert head.floors_beaten
    assert ("1 configuration does not beat the floors of its own architecture on kNN top-1: "
            "8 px (73.6%, not above raw pixels at 76.0%).") in head.sentences
    above = table(resolution_rows({14: [0.786], 8: [0.780]}, floors=(0.7605, 0.712), test_size=20_000))
    assert not any("does not beat the floors" in s for s in headline(above, OBJ, knobs=["resolution"]).sentences)
