"""`--help`, `--version` and `validate` start without torch, Ray or pandas (issue 12: under 1 s);
every command takes a study file or its store; `status` before a run says 0 of N."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "pandas", "numpy", "optuna")


def _modules_loaded_by(*argv: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """Run the CLI in a fresh interpreter; return the heavy top-level modules it imported."""
    code = (
        "import sys\nfrom sweeper.cli import main\n"
        "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code or 0\n"
        f"print('LOADED', ','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr)\n"
        "raise SystemExit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    line = [x for x in done.stderr.splitlines() if x.startswith("LOADED")][-1]
    return {m for m in line.split(" ", 1)[1].split(",") if m}, done


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["--version"], ["validate", "studies/quickstart.yaml", "studies/s3l.yaml"],
                                  ["status", "studies/quickstart.yaml", "--storage", "/nonexistent-s3l-store"]])
def test_help_version_and_validate_import_nothing_heavy(argv):
    loaded, done = _modules_loaded_by(*argv)
    assert done.returncode == 0, done.stderr
    assert loaded == set(), f"{' '.join(argv)} imported {sorted(loaded)}"


def test_importing_the_trainer_methods_and_estimate_does_not_import_torch_dynamo():
    """`@torch.compiler.disable` at class definition imported torch._dynamo with s3l_core.methods:
    about 1 s of every command that imports s3l_core (86 s of a 99 s `estimate` on a loaded machine, issue 27)."""
    code = "import s3l_core.trainer, s3l_core.methods, sweeper.estimate.render; import sys; print('torch._dynamo' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("command", ["run", "estimate", "status", "report"])
def test_a_malformed_study_is_refused_before_torch_or_ray_is_imported(tmp_path, command):
    """`run` imported Ray, torch and pandas before reading the study: 7.9 s to refuse a typo on an
    idle machine (55 s under load) against 0.16 s for `validate`."""
    path = tmp_path / "typo.yaml"
    path.write_text("name: typo\ndataset: fashion-mnist-sample\ntrial: {epochz: 2}\n")
    loaded, done = _modules_loaded_by(command, str(path))
    assert done.returncode == 2, done.stderr
    assert "trial.epochz: unknown key" in done.stderr
    assert loaded == set(), f"{command} imported {sorted(loaded)} before refusing the study"


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-m", "sweeper", "--version"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip() == f"s3l-sweep {version('s3l-sweep')}"


def test_missing_or_directory_study_has_no_made_up_line(tmp_path, capsys):
    from sweeper.cli import main

    assert main(["validate", str(tmp_path / "nope.yaml"), str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {tmp_path / 'nope.yaml'}: cannot read the study file: No such file or directory",
                   f"error: {tmp_path}: is a directory, not a study file"]


def test_status_before_any_run_says_none_of_n_finished(tmp_path, capsys):
    from tests.sweeper.conftest import write_study

    path = write_study(tmp_path, grid=[8, 12, 16], seeds=[0, 1])
    assert main_cli(["status", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{(tmp_path / 'runs' / 'tiny').resolve()}: not run yet, 0 of 6 planned trials finished"
    assert not (tmp_path / "runs").exists()
    assert main_cli(["status", str(path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["state"], status["planned"], status["finished"], status["trials"]) == ("not run yet", 6, 0, [])
    assert main_cli(["status", str(tmp_path / "nosuch.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nosuch.yaml'}: no such file or folder (a study file, or its store runs/<name>)"


def test_status_counts_finished_trials_against_the_study_as_it_now_stands(tmp_path, capsys):
    from sweeper.study.load import load_study
    from tests.sweeper.conftest import write_study
    from tests.sweeper.tune.test_runner import write_records

    path = write_study(tmp_path, grid=[8, 12, 16])
    write_records(load_study(path), ["finished", "failed"])
    store = tmp_path / "runs" / "tiny"
    (store / "study.yaml").write_text(path.read_text())  # as a run leaves it
    assert main_cli(["status", str(store)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{store.resolve()}: state unknown (no state.json), 1 of 3 planned trials finished (1 failed)"
    assert main_cli(["status", str(store), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["planned"], status["finished"], status["statuses"]) == (3, 1, {"finished": 1, "failed": 1})
    assert sorted(t["status"] for t in status["trials"]) == ["failed", "finished"]


def test_every_command_takes_a_study_file_or_its_store(tmp_path, capsys):
    from tests.sweeper.conftest import write_study

    path = write_study(tmp_path)
    store = tmp_path / "runs" / "tiny"
    store.mkdir(parents=True)
    (store / "study.yaml").write_text(path.read_text())  # what a run leaves: the resolved study
    assert main_cli(["validate", str(store)]) == 0
    assert capsys.readouterr().out.strip() == f"{store}: ok"
    assert main_cli(["estimate", str(store)]) == 0
    assert "2 trials:" in capsys.readouterr().out
    assert main_cli(["report", str(path)]) == 0  # a study file finds its store
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"report: {(tmp_path / 'reports' / 'tiny' / 'index.html').resolve()}"
    assert "No finished trial has a kNN top-1 value yet." in out[1:]  # the report's answer follows, even when it is none


def test_report_of_a_study_that_never_ran_is_one_line(tmp_path, capsys):
    from tests.sweeper.conftest import write_study

    path = write_study(tmp_path)
    assert main_cli(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a study store (no study.yaml)" in err[0] and str((tmp_path / "runs" / "tiny").resolve()) in err[0]


def main_cli(argv: list[str]) -> int:
    from sweeper.cli import main

    return main(argv)


def test_output_closed_by_its_reader_ends_quietly():
    """`python -m sweeper estimate ... | head -n 1`: the command stops without a traceback when its reader goes away."""
    proc = subprocess.Popen([sys.executable, "-m", "sweeper", "estimate", "studies/s3l.yaml"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command writes: its first write finds no reader
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def _current_finished_store(tmp_path: Path):
    """A grid study whose every trial has a finished record, with its tables, state and report
    written after the records, as a finished `run` leaves them (built here without training)."""
    import time

    from sweeper.store.claim import report_location
    from sweeper.report import write_report
    from sweeper.store.results import write_tables
    from sweeper.store.run_summary import RunSummary  # noqa: F401 (the light module under test imports)
    from sweeper.store.local import MARKER_NAME, Store, marker, store_root
    from sweeper.study.load import load_study
    from sweeper.tune.trainable import TrialContext, new_record, trial_config_for
    from tests.sweeper.conftest import write_study

    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_study(tmp_path, grid=[8, 12])
    study = load_study(path)
    root = store_root(study)
    store, context = Store(root), TrialContext(str(root), study, cpus=1.0, gpu_fraction=0.0)
    for seed, res in enumerate((8, 12)):
        point = {"resolution": res, "seed": 0}
        record = new_record(point, trial_config_for(context, point), context, "finished", node="host-a:1234")
        record["metrics"] = {"knn_top1": 0.7 + seed / 100, "knn_val_top1": 0.7, "train_pflops": 0.001 * res, "wall_s": 1.0, "test_size": 200}
        store.write_record(record)
    time.sleep(0.01)  # the outputs are newer than every record
    store.put_json(MARKER_NAME, marker(study.name))
    store.put("study.yaml", study.resolved_yaml())
    store.put_json("state.json", {"state": "finished"})
    write_tables(store)
    write_report(root, report_location(study))
    return path, study, root


def test_a_rerun_of_a_current_finished_study_imports_nothing_heavy_and_writes_nothing(tmp_path: Path):
    """`run` of a finished study started Ray (40 s), then torch and a report rebuild (16 s): the
    answer was already in the store (issue 26)."""
    path, study, root = _current_finished_store(tmp_path)
    from sweeper.store.claim import report_location

    watched = [p for folder in (root, report_location(study)) for p in folder.rglob("*") if p.is_file()]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched}
    loaded, done = _modules_loaded_by("run", str(path))
    assert done.returncode == 0, done.stderr
    assert loaded == set(), f"run of a current store imported {sorted(loaded)}"
    assert "2 trials, 2 already finished (reused), 0 to run" in done.stdout and "so Ray is not started" in done.stdout
    assert "2 finished, 0 failed, 2 reused, 0 run now; finished trials ran on 1 node" in done.stdout
    assert (report_location(study) / "summary.txt").read_text() in done.stdout  # the report's answer, as a full run prints it
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched} == before
    assert not (root / ".lock").exists() or (root / ".lock") in before


def test_a_store_with_anything_new_takes_the_full_run(tmp_path: Path):
    """A record newer than the report, a changed study, a state other than finished, a missing trial
    or no report asked for the report's answer: the full path decides (and rebuilds)."""
    import dataclasses
    import json
    import os

    from sweeper.store.run_summary import nothing_to_run

    path, study, root = _current_finished_store(tmp_path)
    assert nothing_to_run(study, None, report=True) is not None
    record = next((root / "trials").glob("*.json"))
    later = record.stat().st_mtime + 5
    os.utime(record, (later, later))
    assert nothing_to_run(study, None, report=True) is None  # the tables and report are older than it
    assert nothing_to_run(study, None, report=False) is None  # so are the tables
    path, study, root = _current_finished_store(tmp_path / "b")
    assert nothing_to_run(dataclasses.replace(study, description="changed"), None, report=True) is None
    grown = dataclasses.replace(study, seeds=(0, 1))
    (root / "study.yaml").write_text(grown.resolved_yaml())
    assert nothing_to_run(grown, None, report=True) is None  # two trials have no record
    (root / "state.json").write_text(json.dumps({"state": "interrupted"}))
    (root / "study.yaml").write_text(study.resolved_yaml())
    assert nothing_to_run(study, None, report=True) is None


def test_a_rerun_with_the_same_set_answers_from_the_store_and_without_it_takes_the_full_run(tmp_path: Path):
    """The store's study.yaml of a `run --set` is headed by its `--set`s: the same command again is
    a current store (no Ray), the file without them is another study (the full path decides)."""
    from sweeper.store.run_summary import nothing_to_run
    from sweeper.study.load import load_study
    from sweeper.study.overrides import parse_overrides

    path, study, root = _current_finished_store(tmp_path)
    overridden = load_study(path, overrides=parse_overrides(["description=changed on the command line"]))
    (root / "study.yaml").write_text(overridden.resolved_yaml())
    assert (root / "study.yaml").read_text().startswith("# resolved with these command-line overrides")
    assert nothing_to_run(overridden, None, report=True) is not None
    assert nothing_to_run(study, None, report=True) is None
    loaded, done = _modules_loaded_by("run", str(path), "--set", "description=changed on the command line")
    assert done.returncode == 0, done.stderr
    assert loaded == set() and "so Ray is not started" in done.stdout
