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
    assert any(s.operator in ("<", "<=") for s in ray.specifier), "sweeper/tune/loopback.py patches a private Ray constant"
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


SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "fish", "cmd", "cmd.exe", "powershell", "pwsh"}
SHELL_CALLS = {"system", "popen", "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe",
               "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "getoutput", "getstatusoutput"}  # fmt: skip


def shell_uses(source: str) -> list[str]:
    """Where Python source hands a command line to a shell: `shell=` anything but False,
    os.system/popen/exec*/spawn*, subprocess.getoutput, or an argv such as ["sh", "-c", ...]."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                    found.append(f"line {node.lineno}: shell=")
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in SHELL_CALLS:
                found.append(f"line {node.lineno}: {name}()")
        if isinstance(node, (ast.List, ast.Tuple)):
            words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if any(Path(w).name in SHELLS for w in words) and any(w.startswith("-") and "c" in w.lstrip("-") for w in words):
                found.append(f"line {node.lineno}: {words[:3]}")
    return found


def test_the_shell_check_sees_every_way_into_a_shell():
    for call in ('subprocess.run(cmd, shell=True)', 'os.system(cmd)', 'os.popen(cmd)', 'subprocess.run(["sh", "-c", cmd])',
                 'subprocess.Popen(("/bin/bash", "-lc", cmd))', 'os.execvp("sh", ["sh", "-c", cmd])', 'subprocess.getoutput(cmd)'):
        assert shell_uses(call), call
    assert not shell_uses('subprocess.run(["git", "rev-parse", "HEAD"], check=True)')
    assert not shell_uses('subprocess.run(["git", "log"], shell=False)')


def test_no_study_value_reaches_a_shell():
    """Study values (names, paths, knob values) reach subprocesses only as argv items, never a
    command line a shell parses."""
    for package in ("sweeper", "s3l_core"):
        for source in (REPO / package).rglob("*.py"):
            assert not shell_uses(source.read_text()), (source, shell_uses(source.read_text()))


def test_every_test_the_guarantees_table_names_exists():
    """A renamed or deleted test must not leave a README guarantee pointing at nothing."""
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Guarantees", 1)[1].split("\n\n`bash bench/faults.sh`", 1)[0]
    named = re.findall(r"`([\w/]+\.py)(?:::(\w+))?`", table)
    assert len(named) >= 20
    for path, test in named:
        found = [REPO / path] if path.startswith("tests/") else sorted((REPO / "tests" / "sweeper").rglob(path))
        assert len(found) == 1 and found[0].is_file(), path  # a bare file name must name one test file
        source = found[0]
        if test:
            assert re.search(rf"^def {test}\(", source.read_text(), re.MULTILINE), f"{path}::{test}"
