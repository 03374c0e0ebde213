"""No import circles among the modules of `sweeper` and `s3l_core` (issue 12).

The graph is read from the source with `ast`, not by importing, so it is fast and sees every
import: top-level, inside a function, and under `if TYPE_CHECKING:` alike. A circle dodged by
a lazy import is still a circle: the two modules cannot be understood (or moved) apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sweeper", "s3l_core")


def module_files(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, packages named by their `__init__.py`."""
    out = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules that module `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from pkg import sub` imports the submodule; a package's own __init__ is then
            # already loading, so the edge goes to the submodule only.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    files = module_files(root, packages)
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the DFS path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


def test_no_import_circle_in_sweeper_or_s3l_core():
    cycle = find_cycle(import_graph(REPO))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_two_circles_of_issue_12_stay_broken():
    graph = import_graph(REPO)
    assert reaches(graph, "s3l_core.data", "s3l_core.imagefolder")  # data dispatches imagefolder: names
    assert not reaches(graph, "s3l_core.imagefolder", "s3l_core.data")
    assert reaches(graph, "sweeper.study.load", "sweeper.study.model")
    assert not reaches(graph, "sweeper.study.space", "sweeper.study.load")
    assert not reaches(graph, "sweeper.study.load", "sweeper.study.space")  # validation needs no expansion


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_check_sees_lazy_and_type_checking_imports(tmp_path: Path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "pkg/b.py": "def f():\n    from pkg import a\n",
        "pkg/c.py": "from .d import x\n",
        "pkg/d.py": "import pkg.c\n",
    })
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.c"] == {"pkg.d"} and graph["pkg.d"] == {"pkg.c"}
    assert find_cycle(graph) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.c", "pkg.d", "pkg.c"])


def test_a_package_importing_its_own_submodules_is_no_circle(tmp_path: Path):
    _write(tmp_path, {
        "pkg/__init__.py": "from .build import run\n",
        "pkg/build.py": "from . import figures\nfrom pkg.figures import plot\n",
        "pkg/figures.py": "def plot():\n    pass\n",
    })
    graph = import_graph(tmp_path, ("pkg",))
    assert graph == {"pkg": {"pkg.build"}, "pkg.build": {"pkg.figures"}, "pkg.figures": set()}
    assert find_cycle(graph) is None


def third_party_imports(path: Path) -> set[str]:
    """The top-level names of what a module imports from outside its own package (absolute imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.partition(".")[0])
    return found


def modules_importing(root: Path, top_level: str, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    return sorted(name for name, path in module_files(root, packages).items() if top_level in third_party_imports(path))


def test_only_sweeper_tune_imports_ray():
    """Ray is one package's business (issue 29): the rest of the sweeper and all of s3l_core run
    without it (validate, estimate, status, report on a finished store)."""
    importers = modules_importing(REPO, "ray")
    assert importers, "the check found no module importing Ray at all"
    assert [m for m in importers if not m.startswith("sweeper.tune.")] == []


def test_the_ray_check_sees_a_lazy_import_outside_tune(tmp_path: Path):
    _write(tmp_path, {
        "sweeper/__init__.py": "", "sweeper/tune/__init__.py": "", "sweeper/tune/runner.py": "import ray\n",
        "sweeper/study/__init__.py": "", "sweeper/study/space.py": "def f():\n    from ray import tune\n",
    })
    assert modules_importing(tmp_path, "ray", ("sweeper",)) == ["sweeper.study.space", "sweeper.tune.runner"]


def test_sweeper_top_level_holds_only_the_command_line_and_sub_packages():
    top = sorted(p.name for p in (REPO / "sweeper").iterdir() if p.suffix == ".py")
    assert top == ["__init__.py", "__main__.py", "cli.py"]
    assert all((p / "__init__.py").is_file() for p in (REPO / "sweeper").iterdir() if p.is_dir() and p.name != "__pycache__")
