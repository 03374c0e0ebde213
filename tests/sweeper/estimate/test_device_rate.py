"""The CPU rate cache records when, where and under what load each rate was measured, ignores a
rate measured at a load above the cores, keeps reading an older cache of bare numbers, and
`estimate --remeasure` measures the study's shapes again (issue 27). Nothing here times a step:
the measurement, the load average and the clock are replaced."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch

import sweeper.estimate.device_rate as device_rate
from s3l_core.config import TrialConfig
from sweeper.cli import main
from sweeper.estimate.device_rate import cpu_trial_seconds, measured_note
from tests.sweeper.conftest import TINY_TRIAL, write_study

CPUS = os.cpu_count() or 1


class FakeMachine:
    """The measurement (a fixed rate, calls counted), the load average and the clock."""

    def __init__(self, monkeypatch, load: float = 0.5):
        self.load, self.rate, self.measured = load, 0.5, 0
        self.now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        monkeypatch.setattr(device_rate, "measure_cpu_tflops", self.measure)
        monkeypatch.setattr(device_rate, "load_average", lambda: self.load)
        monkeypatch.setattr(device_rate, "utc_now", lambda: self.now)

    def measure(self, threads, shape) -> float:
        self.measured += 1
        return self.rate


@pytest.fixture
def machine(tmp_path: Path, monkeypatch) -> FakeMachine:
    monkeypatch.setenv("S3L_CACHE_DIR", str(tmp_path / "cache"))
    return FakeMachine(monkeypatch)


def _config(resolution: int = 8) -> TrialConfig:
    return TrialConfig.from_dict({**TINY_TRIAL, "dataset": "fashion-mnist-sample", "resolution": resolution})


def _cache(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "cache" / "cpu_rate.json").read_text())


def test_a_measured_rate_records_when_where_and_under_what_load(machine: FakeMachine, tmp_path: Path):
    machine.load = 1.5
    prediction = cpu_trial_seconds([_config()], 1)
    assert machine.measured == 1  # one shape: training and evaluation at 8 px
    [record] = _cache(tmp_path).values()
    assert record == {"tflops": 0.5, "measured_utc": "2026-01-02T03:04:05+00:00", "host": platform.node(),
                      "device": device_rate._cpu_model(), "torch": torch.__version__, "load1": 1.5, "cpus": CPUS}
    assert measured_note(list(prediction.rates)) == f"2026-01-02 at a load of at most 1.5 on {CPUS} cores"
    cpu_trial_seconds([_config()], 1)
    assert machine.measured == 1  # cached


def test_a_rate_measured_at_a_load_above_the_cores_is_measured_again(machine: FakeMachine, tmp_path: Path, capsys):
    machine.load = CPUS + 0.5
    cpu_trial_seconds([_config()], 1)
    assert "measured again next time" in capsys.readouterr().err
    assert cpu_trial_seconds([_config()], 1, measure=False) is None  # ignored: as if not cached
    cpu_trial_seconds([_config()], 1)
    assert machine.measured == 2
    assert "1 cached at a load above the cores" in capsys.readouterr().err
    machine.load, machine.rate = CPUS - 0.5, 0.8
    assert cpu_trial_seconds([_config()], 1).rates[0].tflops == 0.8
    assert machine.measured == 3
    assert cpu_trial_seconds([_config()], 1, measure=False).rates[0].tflops == 0.8  # measured at a load the cores carry: kept
    assert machine.measured == 3
    [record] = _cache(tmp_path).values()
    assert record["load1"] == CPUS - 0.5


def test_a_load_equal_to_the_cores_still_counts(machine: FakeMachine):
    machine.load = float(CPUS)
    cpu_trial_seconds([_config()], 1)
    cpu_trial_seconds([_config()], 1)
    assert machine.measured == 1


def test_an_older_cache_of_bare_numbers_is_used_until_remeasured(machine: FakeMachine, tmp_path: Path):
    cpu_trial_seconds([_config(8), _config(12)], 1)
    path = tmp_path / "cache" / "cpu_rate.json"
    old = {key: 0.25 for key in _cache(tmp_path)} | {"another machine|1 cpus|1 threads|torch 0|some shape": 0.125}
    path.write_text(json.dumps(old))  # as written before rates recorded their conditions
    prediction = cpu_trial_seconds([_config(8), _config(12)], 1)
    assert machine.measured == 2 and [r.tflops for r in prediction.rates] == [0.25, 0.25]
    assert [r.conditions for r in prediction.rates] == [None, None]
    assert measured_note(list(prediction.rates)).startswith("time and load not recorded")
    refreshed = cpu_trial_seconds([_config(8)], 1, remeasure=True)
    assert machine.measured == 3 and refreshed.rates[0].tflops == 0.5 and refreshed.rates[0].conditions is not None
    cache = _cache(tmp_path)
    assert cache["another machine|1 cpus|1 threads|torch 0|some shape"] == 0.125  # other entries kept as they were
    assert sorted(json.dumps(v) for v in cache.values() if not isinstance(v, dict)) == ["0.125", "0.25"]  # 12 px: still the old number
    mixed = cpu_trial_seconds([_config(8), _config(12)], 1, measure=False)
    assert measured_note(list(mixed.rates)) == f"2026-01-02 at a load of at most 0.5 on {CPUS} cores; 1 of 2 older, time and load not recorded"


@pytest.mark.parametrize("entry", ["fast", None, {"load1": 1.0}, {"tflops": "x"}, [1, 2]])
def test_a_cache_entry_that_is_no_rate_is_measured_again(entry, machine: FakeMachine, tmp_path: Path):
    cpu_trial_seconds([_config()], 1)
    path = tmp_path / "cache" / "cpu_rate.json"
    path.write_text(json.dumps({key: entry for key in _cache(tmp_path)}))
    cpu_trial_seconds([_config()], 1)
    assert machine.measured == 2


def test_estimate_remeasure_measures_the_studys_shapes_again(machine: FakeMachine, tmp_path: Path, capsys):
    path = write_study(tmp_path, grid=[8, 12, 16])
    assert main(["estimate", str(path)]) == 0
    assert machine.measured == 3
    assert main(["estimate", str(path)]) == 0
    assert machine.measured == 3  # warm cache
    machine.now, machine.rate = datetime(2026, 2, 3, tzinfo=timezone.utc), 0.25
    capsys.readouterr()
    assert main(["estimate", str(path), "--remeasure"]) == 0
    captured = capsys.readouterr()
    assert machine.measured == 6 and "(--remeasure)" in captured.err
    assert f"at the 3 step shapes (network x resolution) of its 3 trials (2026-02-03 at a load of at most 0.5 on {CPUS} cores;" in captured.out
    assert sorted(r["measured_utc"] for r in _cache(tmp_path).values()) == ["2026-02-03T00:00:00+00:00"] * 3


def test_estimate_counts_step_shapes_as_such_beside_the_trials(machine: FakeMachine, tmp_path: Path, capsys):
    """Issue 27: "5 trial shapes" above a table of 6 trials. Trials differing only in seed share a
    shape, and a grown study measures only its new shapes: both counts are said as what they are."""
    small = write_study(tmp_path, name="small", grid=[8])
    assert main(["estimate", str(small)]) == 0
    assert "measuring this CPU's speed at the 1 step shape(s) (network x resolution)" in capsys.readouterr().err
    path = write_study(tmp_path, grid=[8, 12], seeds=[0, 1, 2])
    assert main(["estimate", str(path)]) == 0
    captured = capsys.readouterr()
    assert "measuring this CPU's speed at 1 of the 2 step shape(s)" in captured.err  # 8 px was cached by the small study
    assert "total: 6 trials" in captured.out
    assert "measured on this machine at the 2 step shapes (network x resolution) of its 6 trials (" in captured.out
