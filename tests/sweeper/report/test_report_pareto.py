import numpy as np
import pandas as pd
import pytest

from sweeper.report import pareto_mask


def front(rows, objectives, index=None):
    df = pd.DataFrame(rows, index=index)
    return pareto_mask(df, objectives)


def test_two_objectives_max_accuracy_min_cost():
    rows = {
        "acc": [0.90, 0.85, 0.80, 0.88, 0.70],
        "cost": [10.0, 5.0, 1.0, 12.0, 2.0],
    }
    # 0.88 @ 12 is worse than 0.90 @ 10; 0.70 @ 2 is worse than 0.80 @ 1
    assert front(rows, {"acc": "max", "cost": "min"}).tolist() == [True, True, True, False, False]


def test_keeps_index_and_name():
    mask = front({"acc": [0.5, 0.6], "cost": [1.0, 2.0]}, {"acc": "max", "cost": "min"}, index=[7, 3])
    assert mask.index.tolist() == [7, 3]
    assert mask.dtype == bool
    assert mask.name == "pareto"


def test_both_max_and_both_min():
    rows = {"a": [1, 2, 3, 3], "b": [3, 2, 1, 0]}
    assert front(rows, {"a": "max", "b": "max"}).tolist() == [True, True, True, False]
    # (3, 1) loses to (3, 0); the others trade one objective for the other
    assert front(rows, {"a": "min", "b": "min"}).tolist() == [True, True, False, True]


def test_ties_duplicates_are_all_kept_and_equal_values_dominate_only_if_strictly_better_somewhere():
    rows = {
        "acc": [0.9, 0.9, 0.9, 0.8, 0.8],
        "cost": [1.0, 1.0, 2.0, 1.0, 0.5],
    }
    # two identical best points both stay; 0.9@2 loses to 0.9@1 (same acc, cheaper);
    # 0.8@1 loses to 0.9@1 (same cost, better acc); 0.8@0.5 is cheapest
    assert front(rows, {"acc": "max", "cost": "min"}).tolist() == [True, True, False, False, True]


def test_nan_rows_are_never_in_the_set_and_do_not_dominate():
    rows = {
        "acc": [np.nan, 0.8, 0.7, 0.95],
        "cost": [0.1, 1.0, 2.0, np.nan],
    }
    assert front(rows, {"acc": "max", "cost": "min"}).tolist() == [False, True, False, False]


def test_three_objectives():
    rows = {
        "acc": [0.9, 0.9, 0.8, 0.7, 0.9],
        "flops": [10, 5, 1, 1, 5],
        "mem": [1, 9, 5, 4, 9],
    }
    mask = front(rows, {"acc": "max", "flops": "min", "mem": "min"}).tolist()
    # row 4 duplicates row 1 (kept, neither dominates); row 3 trades acc for memory: kept
    assert mask == [True, True, True, True, True]
    rows["mem"][3] = 6  # now 0.8/1/5 dominates 0.7/1/6
    assert front(rows, {"acc": "max", "flops": "min", "mem": "min"}).tolist() == [True, True, True, False, True]


def test_one_objective_and_empty_table():
    assert front({"acc": [0.1, 0.3, 0.3, np.nan]}, {"acc": "max"}).tolist() == [False, True, True, False]
    empty = pareto_mask(pd.DataFrame({"acc": [], "cost": []}), {"acc": "max", "cost": "min"})
    assert empty.empty


def test_rejects_bad_directions_and_missing_columns():
    df = pd.DataFrame({"acc": [1.0]})
    with pytest.raises(ValueError):
        pareto_mask(df, {"acc": "up"})
    with pytest.raises(KeyError):
        pareto_mask(df, {"acc": "max", "cost": "min"})
    with pytest.raises(ValueError):
        pareto_mask(df, {})


@pytest.mark.parametrize("k", [2, 3])
def test_matches_brute_force_on_random_data_with_ties(k):
    rng = np.random.default_rng(k)
    values = rng.integers(0, 6, size=(300, k)).astype(float)  # many ties
    values[rng.random(300) < 0.05, 0] = np.nan
    df = pd.DataFrame(values, columns=[f"o{i}" for i in range(k)])
    objectives = {f"o{i}": ("max" if i % 2 == 0 else "min") for i in range(k)}
    signed = values * np.array([1 if i % 2 == 0 else -1 for i in range(k)])
    expected = []
    for p in signed:
        if np.isnan(p).any():
            expected.append(False)
            continue
        others = signed[~np.isnan(signed).any(axis=1)]
        dominated = ((others >= p).all(axis=1) & (others > p).any(axis=1)).any()
        expected.append(not dominated)
    assert pareto_mask(df, objectives).tolist() == expected
