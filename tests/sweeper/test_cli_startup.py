"""`--help`, `--version` and `validate` start without torch, Ray or pandas (issue 12: under 1 s)."""

from __future__ import annotations

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


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["--version"], ["validate", "studies/quickstart.yaml", "studies/s3l.yaml"]])
def test_help_version_and_validate_import_nothing_heavy(argv):
    loaded, done = _modules_loaded_by(*argv)
    assert done.returncode == 0, done.stderr
    assert loaded == set(), f"{' '.join(argv)} imported {sorted(loaded)}"


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
