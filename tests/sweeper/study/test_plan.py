"""Which trials a study has: the plan's trial ids are the ones the trainable stores."""

from __future__ import annotations

from pathlib import Path

from sweeper.study.plan import pending_points, point_trial_id, unique_points
from sweeper.study.load import load_study
from sweeper.tune.trainable import TrialContext, trial_config_for, trial_id_for

REPO = Path(__file__).resolve().parents[3]


def test_planned_ids_are_the_trainables_ids_on_a_cpu_only_study():
    study = load_study(REPO / "studies" / "quickstart.yaml")
    context = TrialContext("/unused", study, study.resources.cpu, study.resources.gpu)
    for point in unique_points(study):
        assert trial_config_for(context, point).device == "cpu"  # pinned, where the study says "auto"
        assert point_trial_id(study, point) == trial_id_for(context, point)


def test_a_finished_id_takes_its_point_off_the_pending_list():
    study = load_study(REPO / "studies" / "quickstart.yaml")
    first, *rest = unique_points(study)
    assert pending_points(study, {point_trial_id(study, first)}) == rest
