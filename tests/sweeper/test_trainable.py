"""What a trial tells Ray: validation numbers and costs, never a test-split number."""

from __future__ import annotations

import math

from sweeper.study_schema import OBJECTIVE_METRICS, SELECTION_METRICS, selection_metric
from sweeper.trainable import _objective_values

FINISHED = {
    "knn_top1": 0.81, "knn_val_top1": 0.79, "knn_top1_best": 0.8, "linear_top1": 0.85, "linear_val_top1": 0.84,
    "finetune_top1": 0.9, "finetune_val_top1": 0.88, "train_pflops": 1.0, "eval_pflops": 0.5, "total_pflops": 1.5, "wall_s": 3600.0,
}  # fmt: skip


def test_ray_gets_the_validation_twin_of_every_accuracy_and_no_test_number():
    values = _objective_values(FINISHED, gpu_fraction=0.5)
    assert not {"knn_top1", "linear_top1", "finetune_top1"} & set(values)
    assert values["knn_val_top1"] == 0.79 and values["linear_val_top1"] == 0.84 and values["finetune_val_top1"] == 0.88
    assert values["gpu_hours"] == 0.5


def test_every_objective_a_study_may_name_is_reported_to_ray_under_its_selection_name():
    reported = set(_objective_values(FINISHED, gpu_fraction=0.0))
    for objective in OBJECTIVE_METRICS:
        assert selection_metric(objective) in reported, objective
    assert all(selection_metric(test) == val for test, val in SELECTION_METRICS.items())


def test_missing_metrics_are_nan_so_searchers_always_find_them():
    values = _objective_values({}, gpu_fraction=0.0)
    assert all(math.isnan(v) for k, v in values.items() if k != "gpu_hours")
