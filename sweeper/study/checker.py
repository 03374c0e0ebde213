"""What every check of a study file shares: where problems go, and how a documented key is read.

A `StudyChecker` holds one parsed file and collects its problems and warnings, each at the
line of its key path. The checks themselves are functions over a checker, one module per
part of the file: `sweeper/study/trial_checks.py`, `sweeper/study/space_checks.py`,
`sweeper/study/run_checks.py`; `sweeper/study/load.py` runs them in order.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from s3l_core.config import did_you_mean
from s3l_core.quoting import brief
from sweeper.study.schema import KEY_BY_PATH, REQUIRED, SECTIONS
from sweeper.study.yaml_reader import StudyProblem, YamlDocument


class StudyChecker:
    def __init__(self, file: str, doc: YamlDocument, cluster: dict[str, float] | None):
        self.file = file
        self.doc = doc
        self.data: dict[Any, Any] = doc.data
        self.cluster = cluster  # Ray's {"CPU": 2, "GPU": 0}, when a trial must fit a cluster
        self.problems: list[StudyProblem] = []
        self.warnings: list[StudyProblem] = []

    # ----------------------------------------------------------------- reporting

    def problem(self, path: str, message: str) -> None:
        self.problems.append(self.doc.locate(self.file, path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(self.doc.locate(self.file, path, message))

    # ----------------------------------------------------------------- generic keys

    def section(self, name: str) -> dict[Any, Any]:
        """A mapping section (absent or null: {}), its unknown keys reported."""
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            keys = SECTIONS.get(name)
            hint = f" with keys {', '.join(keys)}" if keys else ""
            self.problem(name, f"expected a mapping{hint}, got {brief(value)}")
            return {}
        if name in SECTIONS:
            for key in value:
                if key not in SECTIONS[name]:
                    self.problem(f"{name}.{key}", f"unknown key '{key}'" + did_you_mean(str(key), SECTIONS[name]))
        return value

    def value(self, path: str, container: dict[Any, Any]) -> Any:
        """The checked value of a documented key, its default when absent or invalid."""
        doc = KEY_BY_PATH[path]
        key = path.rsplit(".", 1)[-1]
        if key not in container:
            if doc.default is REQUIRED:
                self.problem(path, f"is required ({doc.allowed})")
                return None
            return copy.deepcopy(doc.default)
        value = integral(container[key]) if doc.type == "integer" else container[key]
        message = doc.check(value) if doc.check else None
        if message:
            self.problem(path, message)
            return None if doc.default is REQUIRED else copy.deepcopy(doc.default)
        return value

    # ----------------------------------------------------------------- anywhere in the file

    def check_finite(self, value: Any, path: str) -> None:
        """`.inf` and `.nan` are no valid value of any key; reported once, at their own line."""
        if isinstance(value, float) and not math.isfinite(value):
            self.doc.problems.append(self.doc.locate(self.file, path, f"{value} is not a finite number"))
            self.doc.rejected.add(path)  # later checks of this key stay quiet
        elif isinstance(value, dict):
            for key, item in value.items():
                self.check_finite(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.check_finite(item, f"{path}[{i}]")


def integral(value: Any) -> Any:
    """2.0 -> 2, as trial keys (`epochs: 2.0`) accept it; anything else unchanged."""
    return int(value) if isinstance(value, float) and math.isfinite(value) and value.is_integer() else value
