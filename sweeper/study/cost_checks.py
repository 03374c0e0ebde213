"""The check of what one trial may cost, run by `estimate` and `run` (`load_study(check_cost=True)`).

Not by `validate`: predicting a trial's FLOPs counts them on torch's meta device, and `validate`
imports no torch (it answers in well under a second). The run length and batch have limits of
their own that `validate` checks (`s3l_core.config.MAX_EPOCHS` ...); this ceiling catches what
they let through together, such as 10,000 epochs of a width-16 ResNet-50 at 1024 px.
"""

from __future__ import annotations

from typing import Any

from s3l_core.config import ConfigError
from sweeper.study.checker import StudyChecker
from sweeper.study.model import ENUMERATED, SpaceSpec, Study

MAX_TRIAL_PFLOPS = 1e6  # train + evaluation; ~30 SimCLR ResNet-50 ImageNet runs of 1,000 epochs, ~72 days of one H100 at 160 TFLOP/s


def corner_points(study: Study) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cheapest and the dearest corner of the space: each knob at its cheapest (dearest) value,
    picked with the others at the base trial. Cost grows with each knob on its own, so the dearest
    corner is the dearest trial (in a grid it is one of the trials; a distribution's end, in a sampled space)."""
    from sweeper.estimate.cost_model import predicted_cost  # torch

    base = {"seed": study.seeds[0]}
    cheap, dear = dict(base), dict(base)
    for key, spec in study.space.items():
        costs = [(predicted_cost(study.trial_config({**base, key: v})).total_pflops, i, v) for i, v in enumerate(_candidates(spec))]
        cheap[key] = min(costs)[2]
        dear[key] = max(costs)[2]
    return cheap, dear


def _candidates(spec: SpaceSpec) -> tuple[Any, ...]:
    return spec.values if spec.kind in ENUMERATED else tuple(spec.values)  # a distribution's two ends


def check_trial_cost(c: StudyChecker, study: Study, ceiling: float = MAX_TRIAL_PFLOPS) -> None:
    """Refuse a study whose dearest trial is predicted above `ceiling` PFLOPs, with the figure."""
    from sweeper.estimate.cost_model import predicted_cost

    _, dear = corner_points(study)
    try:
        cost = predicted_cost(study.trial_config(dear))
    except ConfigError:  # a corner whose values clash is not a trial; the grid check reports clashes
        return
    if cost.total_pflops <= ceiling:
        return
    knobs = ", ".join(f"{k}={v}" for k, v in dear.items() if k != "seed")
    which = f"the dearest trial ({knobs})" if knobs else "each trial"
    c.problem("space" if knobs else "trial",
              f"{which} is predicted to cost {cost.total_pflops:.3g} PFLOPs ({cost.train_pflops:.3g} train + {cost.eval_pflops:.3g} eval), "
              f"more than the ceiling of {ceiling:.0e} PFLOPs per trial; shorten it (epochs, steps, data_fraction) or make it smaller")
