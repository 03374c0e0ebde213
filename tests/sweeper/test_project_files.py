"""The project stands alone: licence, packaging bounds and extras, and a README that says how to
install on a CPU and agrees with docs/BENCHMARKS.md (issue 12)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _requirement(name: str, extra: str | None = None) -> Requirement:
    deps = PROJECT["optional-dependencies"][extra] if extra else PROJECT["dependencies"]
    return next(r for r in map(Requirement, deps) if r.name == name)


def test_the_declared_mit_licence_is_in_the_repository():
    assert PROJECT["license"] == {"text": "MIT"}
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


def test_ray_has_an_upper_bound_and_admits_the_tested_version():
    ray = _requirement("ray")
    assert any(s.operator in ("<", "<=") for s in ray.specifier), "sweeper/loopback.py patches a private Ray constant"
    assert "2.60.0" in ray.specifier and "3.0.0" not in ray.specifier


def test_torch_ranges_admit_the_tested_versions():
    assert "2.14.1" in _requirement("torch").specifier
    assert "0.29.1" in _requirement("torchvision").specifier


def test_tracker_and_dashboard_extras():
    assert _requirement("wandb", "wandb") and _requirement("mlflow", "mlflow") and _requirement("optuna-dashboard", "dashboard")


def test_readme_says_how_to_install_on_a_cpu_and_for_the_browser_tests():
    readme = (REPO / "README.md").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme
    assert "chromium-driver" in readme
    for extra in ("mlflow", "wandb", "dashboard"):
        assert f"pip install -e '.[{extra}]'" in readme


def test_readme_quickstart_time_is_the_benchmarked_one():
    readme = (REPO / "README.md").read_text()
    benchmarks = (REPO / "docs" / "BENCHMARKS.md").read_text()
    measured = re.search(r"## 5\. Quickstart wall time.*?Wall time \*\*(\d+) s\*\*", benchmarks, re.S).group(1)
    stated = re.search(r"quickstart study on an embedded local\s+Ray \(.*?: (\d+) s on 2 cores", readme, re.S).group(1)
    assert stated == measured
