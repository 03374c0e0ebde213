"""The project stands alone: docs/design.md exists, names every module it cites and every module
there is, and nothing cites an upper-case design file or a folder outside the repository (issue 12)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DESIGN = REPO / "docs" / "design.md"
# What no file may cite, spelled so that this file does not cite it either.
FORBIDDEN = ("design.md".upper().replace(".MD", ".md"), "../" + "shared/")


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / n for n in names if n.endswith((".py", ".md", ".yaml", ".toml", ".sh", ".txt", ".cfg")) and (REPO / n).is_file()]


def test_nothing_cites_a_design_file_outside_docs_design_md():
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in _tracked_text_files()
                 for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if any(cited in line for cited in FORBIDDEN)]
    assert offenders == []


def test_every_module_path_in_the_design_exists():
    cited = set(re.findall(r"`((?:sweeper|s3l_core|bench)/[\w/]+\.py)`", DESIGN.read_text()))
    assert len(cited) > 10
    assert sorted(c for c in cited if not (REPO / c).is_file()) == []


def _layout_rows(text: str) -> dict[str, str]:
    """The layout table's rows, by the package folder each starts with (`sweeper/study/`)."""
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `((?:sweeper|s3l_core)/[\w/]+/)` \|.*$", text, re.M)}


def test_the_design_names_every_module():
    """Each module is cited by its path, by its file name, or (in a sub-package) by name in its package's layout row."""
    text = DESIGN.read_text()
    rows = _layout_rows(text)
    assert "sweeper/study/" in rows and "sweeper/tune/" in rows
    modules = [p.relative_to(REPO) for pkg in ("s3l_core", "sweeper") for p in (REPO / pkg).rglob("*.py") if not p.name.startswith("__")]

    def named(path: Path) -> bool:
        folder = f"{path.parent.as_posix()}/"
        return path.as_posix() in text or f"`{path.name}`" in text or f"`{path.stem}`" in rows.get(folder, "")

    missing = [p.as_posix() for p in modules if not named(p)]
    assert missing == [], "docs/design.md does not say what these modules do"
