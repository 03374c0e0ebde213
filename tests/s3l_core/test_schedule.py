"""The step plan: per-stage warm-up and cosine, steps or epochs, the batch-scaled rate."""

import pytest

from s3l_core.config import TrialConfig
from s3l_core.schedule import plan_run


def config(**raw) -> TrialConfig:
    return TrialConfig.from_dict({"optimizer": {"lr": 0.4, "warmup_epochs": 1}, **raw})


def test_every_stage_warms_up_and_decays_on_its_own_schedule():
    """S3L continues at full resolution with a schedule of its own: a short last stage must not
    inherit the tail of the first stage's cosine."""
    plan = plan_run(config(batch_size=100, resolution=[{"resolution": 14, "epochs": 9}, {"resolution": 28, "epochs": 1}]), 1000, 1000)
    assert [(s.resolution, s.steps, s.warmup_steps) for s in plan.stages] == [(14, 90, 10), (28, 10, 10)]
    first_of_last = plan.learning_rate(90)
    peak = max(plan.learning_rate(step) for step in range(90, 100))
    assert plan.learning_rate(89) < 0.01 * plan.base_lr  # the first stage ends decayed
    assert first_of_last == pytest.approx(plan.base_lr / 10)  # the second warms up from the start
    assert peak == pytest.approx(plan.base_lr)  # and reaches the full rate
    assert plan.stage_at(95) == (plan.stages[1], 5)


def test_learning_rate_scales_with_the_batch_actually_used():
    full = plan_run(config(epochs=1, batch_size=512), 10_000, 10_000)
    tiny = plan_run(config(epochs=1, batch_size=512), 100, 10_000)  # a subset smaller than the batch
    assert full.batch_size == 512 and full.base_lr == pytest.approx(0.4 * 2)
    assert tiny.batch_size == 100 and tiny.base_lr == pytest.approx(0.4 * 100 / 256)


def test_steps_runs_report_at_the_same_steps_whatever_the_data_fraction():
    small = plan_run(config(steps=390, batch_size=256), 100, 9000)
    large = plan_run(config(steps=390, batch_size=256), 9000, 9000)
    assert small.total_steps == large.total_steps == 390
    assert small.steps_per_round == large.steps_per_round == 9000 // 256
    epochs = plan_run(config(epochs=3, batch_size=256), 900, 9000)
    assert epochs.steps_per_round == 3 and epochs.total_steps == 9 and epochs.rounds == 3


def test_default_warm_up_is_a_tenth_of_each_stage_at_most_ten_epochs():
    short = plan_run(TrialConfig.from_dict({"epochs": 4, "batch_size": 100}), 1000, 1000)
    long = plan_run(TrialConfig.from_dict({"epochs": 800, "batch_size": 100}), 1000, 1000)
    assert short.stages[0].warmup_steps == 4 and long.stages[0].warmup_steps == 100
