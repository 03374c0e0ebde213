"""Runner pieces that need no Ray cluster."""

from __future__ import annotations

from pathlib import Path

import optuna

from sweeper.tune.runner import _fail_abandoned_optuna_trials


def test_trials_a_killed_driver_left_running_in_optuna_are_marked_failed(tmp_path: Path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    study.tell(study.ask(), 1.0)
    study.ask()  # left RUNNING, as by a killed driver
    _fail_abandoned_optuna_trials(storage, "s")
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    _fail_abandoned_optuna_trials(storage, "not-created-yet")  # first run: nothing to do, no error


finishes: list[str] = []  # the state each faked `_finish` was asked to write
fake_tuners: list = []  # each faked Tuner, with the searcher, param space and configs Ray was given


def run_with_fake_ray(study, monkeypatch, ends: int | None = None, tables: bool = False) -> tuple[object, list[dict]]:
    """run_study with Ray's connection and Tuner faked: (its summary, the points it launched).
    The fake Tuner records the first `ends` launched trials as finished (all by default), as Tune
    returns after Ctrl-C with the others stopped and unrecorded. `tables`: the results table is built from
    the store's records (else it is empty)."""
    import pandas as pd
    import ray

    import sweeper.tune.runner as runner
    from sweeper.store.local import Store, store_root
    from sweeper.tune.trainable import new_record, trial_config_for

    launched: list[dict] = []
    finishes.clear()
    initialized_before = ray.is_initialized()  # an earlier test may have left a Ray up in this process

    class FakeTuner:
        def __init__(self, searcher, param_space: dict, context):
            self.searcher, self.param_space, self.context = searcher, param_space, context

        def fit(self) -> None:
            self.configs = configs = list(iter(lambda: self.searcher.suggest(f"ray{len(launched)}"), "FINISHED"))
            fake_tuners.append(self)
            points = [c["point"] for c in configs]
            launched.extend(points)
            store = Store(store_root(study))
            for point in points[:ends]:
                store.write_record(new_record(point, trial_config_for(self.context, point), self.context, "finished"))

    monkeypatch.setattr(runner, "connect", lambda address: None)
    monkeypatch.setattr(runner, "check_capacity", lambda study: None)
    monkeypatch.setattr(runner.ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(runner, "make_eta", lambda *args, **kwargs: None)
    monkeypatch.setattr(runner, "_tuner", lambda study, store, context, searcher, param_space, *rest, **kw: FakeTuner(searcher, param_space, context))
    from sweeper.store.results import results_frame

    def finish(store, state, report_dir):
        finishes.append(state)
        return (results_frame(store.records()) if tables else pd.DataFrame(), None)

    monkeypatch.setattr(runner, "_finish", finish)
    summary = runner.run_study(study, report=False)
    assert ray.is_initialized() == initialized_before  # the run itself started no Ray
    return summary, launched


def write_records(study, statuses: list[str]) -> list[dict]:
    """A record per status for the study's first points, in order; the study's points."""
    import sweeper.tune.runner as runner
    from sweeper.study.plan import unique_points
    from sweeper.store.local import MARKER_NAME, Store, marker, store_root
    from sweeper.tune.trainable import new_record, trial_config_for

    root = store_root(study)
    store, context = Store(root), runner._context(study, root)
    store.put_json(MARKER_NAME, marker(study.name))  # as an earlier run of the study left it
    points = unique_points(study)
    for point, status in zip(points, statuses):
        store.write_record(new_record(point, trial_config_for(context, point), context, status))
    return points


def test_a_run_launches_only_the_trials_the_store_lacks(tmp_path: Path, monkeypatch):
    """Finished trials are reused; failed, stopped, budget-skipped and missing ones are launched again."""
    from sweeper.study.load import load_study
    from tests.sweeper.conftest import write_study

    study = load_study(write_study(tmp_path, grid=[8, 12, 16], seeds=[0, 1]))
    points = write_records(study, ["finished", "finished", "failed", "stopped", "skipped_budget"])  # the sixth has no record
    summary, launched = run_with_fake_ray(study, monkeypatch)
    assert (summary.total, summary.reused, summary.launched) == (6, 2, 4)
    assert sorted(map(str, launched)) == sorted(map(str, points[2:]))


def test_ray_is_handed_one_small_point_per_trial_whatever_the_study_size(tmp_path: Path, monkeypatch):
    """`tune.grid_search(points)` put every point in the param space, and Ray deep-copied the whole
    list once per trial: quadratic in the study's size (issue 26). Now each trial's config is its own
    point and store id, and what Tune saves of the searcher is a cursor."""
    import pickle

    from sweeper.study.plan import point_trial_id
    from sweeper.study.load import load_study
    from tests.sweeper.conftest import write_study

    config_bytes, saved_bytes = {}, {}
    for n in (3, 300):
        (tmp_path / str(n)).mkdir()
        study = load_study(write_study(tmp_path / str(n), grid=[8], seeds=list(range(n))))
        run_with_fake_ray(study, monkeypatch)
        tuner = fake_tuners[-1]
        assert tuner.param_space == {} and len(tuner.configs) == n
        assert all(set(c) == {"trial_id", "point"} and c["trial_id"] == point_trial_id(study, c["point"]) for c in tuner.configs)
        config_bytes[n] = max(len(pickle.dumps(c)) for c in tuner.configs)
        tuner.searcher.save(str(tmp_path / f"searcher-{n}.json"))
        saved_bytes[n] = (tmp_path / f"searcher-{n}.json").stat().st_size
    assert config_bytes[300] <= config_bytes[3] + 4 and config_bytes[300] < 500  # a seed's extra digits, no more
    assert saved_bytes[300] <= saved_bytes[3] + 4


def test_a_study_grown_by_a_seed_runs_only_the_new_seeds_trials(tmp_path: Path, monkeypatch):
    from sweeper.study.load import load_study
    from tests.sweeper.conftest import write_study

    small = load_study(write_study(tmp_path, grid=[8, 12], seeds=[0]))
    write_records(small, ["finished", "finished"])
    grown = load_study(write_study(tmp_path, grid=[8, 12], seeds=[0, 1]))
    summary, launched = run_with_fake_ray(grown, monkeypatch)
    assert (summary.total, summary.reused, summary.launched) == (4, 2, 2)
    assert sorted((p["resolution"], p["seed"]) for p in launched) == [(8, 1), (12, 1)]


def test_a_run_that_returns_with_trials_unended_is_interrupted_not_finished(tmp_path: Path, monkeypatch):
    """Ctrl-C: Ray Tune swallows the SIGINT, stops the trials and returns from fit(); state.json said
    `finished` though 4 of 6 trials never ended (issue 24)."""
    import pytest

    from sweeper.tune.runner import StudyInterrupted
    from sweeper.study.load import load_study
    from tests.sweeper.conftest import write_study

    study = load_study(write_study(tmp_path, grid=[8, 12, 16], seeds=[0, 1]))
    with pytest.raises(StudyInterrupted, match="interrupted: 2 of 6 trials finished, 4 unfinished.*`run` the study again to resume"):
        run_with_fake_ray(study, monkeypatch, ends=2)
    assert finishes == ["interrupted"]  # the tables, state.json and the report say so


def test_the_summary_counts_the_hosts_finished_trials_ran_on_not_ray_node_ids(tmp_path: Path, monkeypatch):
    """A record's node is `host:ray-node-id`, and a resumed study's second Ray on the same machine has
    a new node id: trials on one machine, before and after a resume, ran on 1 node, not 2."""
    import sweeper.tune.runner as runner
    from sweeper.study.plan import unique_points
    from sweeper.store.local import Store, store_root
    from sweeper.study.load import load_study
    from sweeper.tune.trainable import new_record, trial_config_for
    from tests.sweeper.conftest import write_study

    from sweeper.store.local import MARKER_NAME, marker

    study = load_study(write_study(tmp_path, grid=[8, 10, 12]))
    root = store_root(study)
    store, context = Store(root), runner._context(study, root)
    store.put_json(MARKER_NAME, marker(study.name))  # as an earlier run of the study left it
    points = unique_points(study)

    def record(point: dict, node: str, status: str = "finished") -> None:
        store.write_record(new_record(point, trial_config_for(context, point), context, status, node=node))

    record(points[0], "box:1a2b3c4d")
    record(points[1], "box:9f8e7d6c")  # the same machine's Ray after a resume: a new node id
    record(points[2], "other:11112222", "failed")  # not a finished trial: not counted
    assert run_with_fake_ray(study, monkeypatch, tables=True)[0].nodes == 1
    record(points[2], "other:11112222")
    assert run_with_fake_ray(study, monkeypatch, tables=True)[0].nodes == 2


def test_the_scheduler_and_the_searchers_optimise_validation_numbers_in_the_studys_direction(tmp_path: Path):
    """What Ray and Optuna are told: ASHA and TPE the first objective, NSGA-II every objective,
    each as its validation twin (never a test number) and in the study's own direction."""
    import sweeper.tune.runner as runner
    from sweeper.study.load import load_study
    from tests.sweeper.conftest import TINY_TRIAL, write_study

    asha = load_study(write_study(tmp_path, name="asha", objectives={"knn_top1": "max", "train_pflops": "min"},
                                  scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2}))
    scheduler = runner._scheduler(asha)
    assert (scheduler._metric, scheduler._mode, scheduler._time_attr) == ("knn_val_top1", "max", "epoch")
    assert runner._scheduler(load_study(write_study(tmp_path, name="plain"))) is None
    space = {"backbone.width": {"uniform": [0.0625, 0.125]}}
    probe = {**TINY_TRIAL, "eval": {**TINY_TRIAL["eval"], "linear_probe": True}}
    tpe = load_study(write_study(tmp_path, name="tpe", space=space, trial=probe, objectives={"linear_top1": "max", "train_pflops": "min"},
                                 search={"algorithm": "optuna-tpe", "num_samples": 2, "seed": 0}))
    searcher, _, samples = runner._searcher_and_samples(tpe, tmp_path, [], 0)
    assert (searcher.metric, searcher.mode, samples) == ("linear_val_top1", "max", 2)
    nsga = load_study(write_study(tmp_path, name="nsga", space=space, objectives={"knn_top1_best": "max", "train_pflops": "min"},
                                  search={"algorithm": "optuna-nsga2", "num_samples": 3, "seed": 0}))
    searcher, _, samples = runner._searcher_and_samples(nsga, tmp_path, [], 1)
    assert (searcher.metric, searcher.mode, samples) == (["knn_top1_best", "train_pflops"], ["max", "min"], 2)


def test_a_run_with_nothing_to_launch_never_connects_to_ray(tmp_path: Path, monkeypatch, capsys):
    """Every trial finished: `run` says so and rebuilds the tables and state, but starts no Ray
    (40 s of start-up for nothing, issue 26) and keeps the provenance of the run that trained."""
    import sweeper.tune.runner as runner
    from sweeper.study.load import load_study
    from sweeper.store.local import store_root
    from tests.sweeper.conftest import write_study

    study = load_study(write_study(tmp_path, grid=[8, 12]))
    write_records(study, ["finished", "finished"])
    (store_root(study) / "provenance.json").write_text('{"torch": "the run that trained"}')
    connected = []
    run_with_fake_ray(study, monkeypatch)  # fakes Ray's cluster and Tuner; then connecting is recorded
    monkeypatch.setattr(runner, "connect", lambda address: connected.append(address))
    summary = runner.run_study(study, report=False)
    assert (summary.total, summary.reused, summary.launched) == (2, 2, 0) and connected == []
    assert "nothing to launch, so Ray is not started" in capsys.readouterr().out
    assert (store_root(study) / "provenance.json").read_text() == '{"torch": "the run that trained"}'
    assert finishes[-1] == "finished"


def test_the_nsga2_searcher_pickles_as_ray_tune_saves_it(tmp_path: Path):
    """Tune pickles the searcher when a run starts: Optuna 5.1's NSGA-II sampler holds a thread
    lock that does not pickle, which failed every NSGA-II study before a trial ran."""
    import ray.cloudpickle

    import sweeper.tune.runner as runner
    from sweeper.study.load import load_study
    from tests.sweeper.conftest import write_study

    study = load_study(write_study(tmp_path, name="nsga", space={"backbone.width": {"uniform": [0.0625, 0.125]}},
                                   search={"algorithm": "optuna-nsga2", "num_samples": 2, "seed": 0}))
    searcher, _, _ = runner._searcher_and_samples(study, tmp_path, [], 0)
    again = ray.cloudpickle.loads(ray.cloudpickle.dumps(searcher))
    assert type(again._sampler).__name__ == "NSGAIISampler" and again._sampler._population_size == searcher._sampler._population_size


def test_ray_is_not_asked_to_snapshot_the_experiment_at_every_trial_checkpoint(tmp_path: Path):
    """`CheckpointConfig(num_to_keep=1)` made Tune write its whole experiment state (as long as the
    study) at every trial checkpoint: the driver's work per trial grew with the trials before it.
    Each trial deletes its own superseded checkpoint instead (`report_replacing_checkpoint`)."""
    import sweeper.tune.runner as runner
    from sweeper.tune.point_queue import PointQueue, store_trial_name
    from sweeper.store.local import Store
    from sweeper.study.load import load_study
    from tests.sweeper.conftest import write_study

    study = load_study(write_study(tmp_path, grid=[8, 12]))
    store = Store(tmp_path / "runs" / "tiny")
    context = runner._context(study, store.root)
    tuner = runner._tuner(study, store, context, PointQueue([]), {}, 0, 2, 0)
    run_config, tune_config = tuner._local_tuner._run_config, tuner._local_tuner._tune_config
    assert run_config.checkpoint_config.num_to_keep is None
    assert tune_config.trial_name_creator is store_trial_name and tune_config.trial_dirname_creator is store_trial_name


def test_a_runs_set_overrides_are_in_the_stores_study_and_provenance(tmp_path: Path, monkeypatch):
    """`run --set`: the store's study.yaml is the overridden study (and says which `--set`s made it),
    provenance.json lists them, and the records carry the edited file's trial ids (issue 27)."""
    import json

    from sweeper.study.plan import point_trial_id, unique_points
    from sweeper.store.local import Store, store_root
    from sweeper.study.load import load_study
    from sweeper.study.overrides import parse_overrides
    from tests.sweeper.conftest import write_study

    sets = ["trial.epochs=3", "space.resolution.grid=[8, 16]", "description=line one\nline two"]
    study = load_study(write_study(tmp_path, grid=[8, 12]), overrides=parse_overrides(sets))
    run_with_fake_ray(study, monkeypatch)
    root = store_root(study)
    text = (root / "study.yaml").read_text()
    assert text.splitlines()[1:4] == ["# --set trial.epochs=3", "# --set space.resolution.grid=[8, 16]", "# --set description=line one\\nline two"]
    stored = load_study(root / "study.yaml")
    assert stored.to_dict() == study.to_dict() and stored.base_trial["epochs"] == 3
    assert json.loads((root / "provenance.json").read_text())["overrides"] == sets
    assert Store(root).finished_ids() == {point_trial_id(study, p) for p in unique_points(study)}
