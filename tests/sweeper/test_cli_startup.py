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
    code = "import s3l_core.trainer, s3l_core.methods, sweeper.estimate; import sys; print('torch._dynamo' in sys.modules)"
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
    from sweeper.study import load_study
    from tests.sweeper.conftest import write_study
    from tests.sweeper.test_runner import write_records

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
