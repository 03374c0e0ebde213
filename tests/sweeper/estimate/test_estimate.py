"""`estimate` and `run --dry-run`: sampled searches show their space and cost range, costs are
train + eval FLOPs with wall time and device-hours per device, and a dry run lists only what
would run (issue 12)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from sweeper.cli import main
from sweeper.estimate.cost_model import GPU_RATES, predicted_cost
from sweeper.estimate.render import cost_range
from sweeper.study.plan import pending_points, unique_points
from sweeper.study.load import load_study
from sweeper.study.model import StudyError
from tests.sweeper.conftest import TINY_TRIAL, write_study

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def cached_cpu_rate(tmp_path: Path, monkeypatch):
    """A private cache, so a test measures this machine's rate (once) without touching ~/.cache; the
    load average as on idle cores, so a rate measured on the shared machine is not measured again."""
    monkeypatch.setenv("S3L_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("sweeper.estimate.device_rate.load_average", lambda: 0.0)


def test_optuna_estimate_shows_the_space_the_count_and_the_cost_range_not_repeated_rows(capsys):
    assert main(["estimate", str(REPO / "studies" / "s3l.yaml")]) == 0
    out = capsys.readouterr().out
    assert "64 trials, SAMPLED by optuna-nsga2" in out
    for knob in ("resolution: choice of 8, 12, 16, 20, 28, 14x80%,28x20%", "backbone.width: choice of 0.125, 0.25, 0.5, 1.0",
                 "data_fraction: loguniform in [0.02, 1]", "epochs: int in [10, 100]"):
        assert knob in out
    cheapest, dearest, mean = (float(re.search(rf"{label}\s+([\d.e+-]+) PFLOPs", out).group(1)) for label in ("cheapest corner", "dearest corner", "expected mean"))
    assert cheapest < mean < dearest
    assert "resolution=8, backbone.width=0.125, backbone.depth=10, backbone.stages=3, data_fraction=0.02, epochs=10" in out
    assert len(out.splitlines()) < 30  # a summary, not one row per sample


def test_cost_range_bounds_uniform_draws_of_the_space():
    study = load_study(REPO / "studies" / "s3l.yaml")
    spread = cost_range(study)
    assert spread.cheapest[1].total_pflops <= spread.mean.total_pflops <= spread.dearest[1].total_pflops
    from sweeper.study.space import random_points

    for point in random_points(study, 20, 7):
        assert spread.cheapest[1].total_pflops <= predicted_cost(study.trial_config(point)).total_pflops <= spread.dearest[1].total_pflops * 1.0001


def test_a_cpu_study_gets_wall_time_and_cpu_hours_from_a_measured_rate_and_gpu_figures(tmp_path: Path, capsys):
    path = write_study(tmp_path, grid=[8, 12, 16], seeds=[0, 1])
    assert main(["estimate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0.0 GPU-hours" not in out
    cpu = next(line for line in out.splitlines() if line.strip().startswith("CPU (1 thread/trial)"))
    assert "CPU-h" in cpu and "measured on this machine at the 3 step shapes (network x resolution) of its 6 trials (" in cpu
    rate = float(cpu.split()[3])
    assert math.isfinite(rate) and rate > 0
    cache = json.loads((tmp_path / "cache" / "cpu_rate.json").read_text())
    assert sorted(key.rsplit(" ", 1)[1] for key in cache) == ["12px", "16px", "8px"]  # one measured rate per shape
    rates = [entry["tflops"] for entry in cache.values()]
    assert min(rates) <= rate * 1.01 and rate <= max(rates) * 1.01  # the study's blend of them
    for gpu in GPU_RATES:
        assert re.search(rf"^\s+{gpu.name}\s+.*GPU-h", out, re.M), gpu.name


def test_each_trial_is_timed_at_its_own_shapes_rate_and_the_study_wall_is_the_longest_slot(tmp_path: Path, capsys):
    """Rates planted in the cache (as if measured): a trial's training FLOPs go at its own
    resolution's rate and its evaluation at the evaluation resolution's; two slots."""
    from sweeper.estimate.cost_model import predicted_eval_pflops, predicted_train_pflops_by_resolution

    path = write_study(tmp_path, grid=[8, 16], seeds=[0], trial={**TINY_TRIAL, "epochs": 40})
    assert main(["estimate", str(path)]) == 0  # measures the two shapes (8 px also evaluates)
    capsys.readouterr()
    cache_file = tmp_path / "cache" / "cpu_rate.json"
    planted = {"8px": 0.001, "16px": 0.002}  # the 16 px trial: 4x the FLOPs at 2x the rate, twice as long
    cache = {key: planted[key.rsplit(" ", 1)[1]] for key in json.loads(cache_file.read_text())}
    cache_file.write_text(json.dumps(cache))
    assert main(["estimate", str(path)]) == 0
    cpu = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("CPU (1 thread/trial)"))
    study = load_study(path)
    seconds = []
    for point in unique_points(study):
        c = study.trial_config(point)
        (resolution, train), = predicted_train_pflops_by_resolution(c).items()
        seconds.append(train * 1e3 / planted[f"{resolution}px"] + predicted_eval_pflops(c) * 1e3 / planted["8px"])
    per_trial, wall = re.search(r"\s([\d.]+ (?:s|min|h))\s+([\d.]+ (?:s|min|h))\s", cpu).groups()
    assert per_trial == duration(sum(seconds) / 2) and wall == duration(max(seconds))  # side by side: the longer one


def duration(seconds: float) -> str:
    return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def test_estimate_totals_are_train_plus_eval(tmp_path: Path, capsys):
    path = write_study(tmp_path, grid=[8, 12])
    assert main(["estimate", str(path)]) == 0
    out = capsys.readouterr().out
    total, train, evaluation = (float(x) for x in re.search(r"total: 2 trials, ([\d.e+-]+) PFLOPs \(([\d.e+-]+) train \+ ([\d.e+-]+) eval", out).groups())
    assert evaluation > 0 and total == pytest.approx(train + evaluation, rel=0.01)
    study = load_study(path)
    assert total == pytest.approx(sum(predicted_cost(study.trial_config(p)).total_pflops for p in unique_points(study)), rel=0.01)


def test_a_gpu_hours_budget_on_a_cpu_only_study_is_a_validation_error(tmp_path: Path):
    path = write_study(tmp_path, budget={"gpu_hours": 1.0})
    with pytest.raises(StudyError) as refused:
        load_study(path)
    (problem,) = refused.value.problems
    assert problem.key_path == "budget.gpu_hours" and "resources.gpu is 0" in problem.message
    assert load_study(write_study(tmp_path, name="pf", budget={"pflops": 1.0})).budget.pflops == 1.0


def _finish(study, point) -> dict:
    """The store record a finished trial of `point` leaves (what `run` reuses)."""
    from dataclasses import replace

    from sweeper.store.local import trial_id

    config = replace(study.trial_config(point), device="cpu")
    return {"trial_id": trial_id(config.to_dict()), "status": "finished", "config": config.to_dict(), "point": point, "metrics": {}}


def test_dry_run_lists_only_the_trials_a_run_would_launch(tmp_path: Path, capsys):
    from sweeper.store.local import Store, store_root

    path = write_study(tmp_path, grid=[8, 12, 16], seeds=[0, 1])
    study = load_study(path)
    root = store_root(study)
    store = Store(root)
    root.mkdir(parents=True)
    (root / "study.yaml").write_text(path.read_text())
    done = unique_points(study)[:2]
    for point in done:
        store.write_record(_finish(study, point))
    store.write_record({**_finish(study, unique_points(study)[2]), "status": "failed"})  # failed trials run again
    assert len(pending_points(study, store.finished_ids())) == 4
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "6 trials, 2 already finished in the store, 4 would run:" in out
    assert "total: 4 trials" in out
    assert sorted(json.loads(p.read_text())["status"] for p in (root / "trials").glob("*.json")) == ["failed", "finished", "finished"]  # nothing written


@pytest.mark.slow
def test_predicted_cost_matches_what_a_trial_measures_and_the_budget_charges():
    """One cost definition: the estimate predicts the trainer's total_pflops (train + eval), the
    number budget.pflops and the ledger charge (they were 12.6x apart when eval was left out)."""
    from s3l_core.config import TrialConfig
    from s3l_core.trainer import train
    from tests.sweeper.conftest import TINY_TRIAL

    config = TrialConfig.from_dict({"dataset": "fashion-mnist-sample", **TINY_TRIAL, "device": "cpu"})
    measured = train(config).metrics()
    predicted = predicted_cost(config)
    assert predicted.eval_pflops == pytest.approx(measured["eval_pflops"], rel=0.35)
    assert predicted.train_pflops == pytest.approx(measured["train_pflops"], rel=0.35)
    assert predicted.total_pflops == pytest.approx(measured["total_pflops"], rel=0.25)


@pytest.mark.parametrize("shape", ["grid", "base trial"])
def test_a_trial_above_the_cost_ceiling_is_refused_by_estimate_and_run_with_its_figure(shape, tmp_path, capsys, ray_start_spy, monkeypatch):
    """Every value within its own limit, together over 10^6 PFLOPs: 10,000 epochs of a width-16
    ResNet-50 on the whole of Fashion-MNIST at 1024 px. `validate` does not predict costs (no torch)."""
    from sweeper.study.cost_checks import MAX_TRIAL_PFLOPS

    monkeypatch.setattr("sweeper.estimate.device_rate.measure_cpu_tflops", lambda threads, shape: 1.0)  # never time a step of that size

    huge = {**TINY_TRIAL, "epochs": 10_000, "backbone": {"depth": 50, "width": 16, "stages": 4}, "data_fraction": 1.0, "batch_size": 4096}
    space = {"space": {"resolution": {"grid": [32, 1024]}}} if shape == "grid" else {"space": {}}
    path = write_study(tmp_path, name="huge", trial={**huge, "resolution": 1024}, **space)
    text = path.read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if t.startswith("space:" if shape == "grid" else "trial:"))
    predicted = predicted_cost(load_study(path).trial_config({"resolution": 1024, "seed": 0})).total_pflops
    assert predicted > MAX_TRIAL_PFLOPS
    for command in (["estimate", str(path)], ["run", str(path)], ["run", str(path), "--dry-run"]):
        assert main(command) == 2, command
        lines = [x for x in capsys.readouterr().err.splitlines() if x.strip() and not x.startswith("warning:")]
        assert len(lines) == 1, (command, lines)
        assert lines[0].startswith(f"error: {path}:{line} {'space' if shape == 'grid' else 'trial'}: "), lines[0]
        assert f"predicted to cost {predicted:.3g} PFLOPs" in lines[0] and "more than the ceiling of 1e+06 PFLOPs per trial" in lines[0]
    assert ray_start_spy == [] and not (tmp_path / "runs").exists()
    assert main(["validate", str(path)]) == 0


def test_gpu_rows_of_a_small_study_give_their_seconds_not_zero(tmp_path: Path, capsys, monkeypatch):
    """Issue 27: a trial of a fraction of a second on a GPU printed "0 s" per trial and for the study."""
    monkeypatch.setattr("sweeper.estimate.device_rate.measure_cpu_tflops", lambda threads, shape: 1.0)  # the CPU row is not under test
    for path, tiny in ((REPO / "studies" / "cpu" / "width.yaml", False), (write_study(tmp_path, grid=[8]), True)):
        assert main(["estimate", str(path)]) == 0
        out = capsys.readouterr().out
        study = load_study(path)
        pflops = [predicted_cost(study.trial_config(p)).total_pflops for p in unique_points(study)]
        for gpu in GPU_RATES:
            seconds = [p * 1e3 / gpu.tflops for p in pflops]
            row = next(line for line in out.splitlines() if line.strip().startswith(gpu.name))
            assert " 0 s " not in row, row
            if tiny:
                assert max(seconds) < 0.01 and row.count("< 0.01 s") == 2, row
            else:
                assert 0.01 < min(seconds) and max(seconds) < 10
                per_trial = re.search(rf"{gpu.name}\s+\S+\s+(\S+) s\s", row).group(1)
                assert per_trial == f"{sum(seconds) / len(seconds):.2g}", row
