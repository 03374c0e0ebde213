"""`estimate`: every trial a study would run, with its predicted cost (no Ray, no training)."""

from __future__ import annotations

import pandas as pd

from sweeper.cost_model import predicted_gpu_hours, predicted_train_pflops
from sweeper.results import schedule_label
from sweeper.space import points
from sweeper.study import Study


def estimate_table(study: Study) -> pd.DataFrame:
    """One row per trial for grid/random searches; `num_samples` rows of the base trial's
    knobs are not knowable for Optuna, so it lists the base trial once with the count."""
    rows = []
    sampled = study.search.algorithm in ("grid", "random")
    for point in points(study) if sampled else [{"seed": study.seeds[0]}]:
        config = study.trial_config(point)
        pflops = predicted_train_pflops(config)
        knobs = {k: (schedule_label(config.to_dict()["resolution"]) if k == "resolution" else v) for k, v in point.items()}
        rows.append({**knobs, "epochs": config.epochs, "predicted_train_pflops": pflops, "predicted_gpu_hours": predicted_gpu_hours(pflops, study.resources.gpu)})
    table = pd.DataFrame(rows)
    if not sampled:  # Optuna: the base trial stands for each of num_samples draws
        table = pd.concat([table] * study.search.num_samples, ignore_index=True)
    return table
