"""A YAML loader that reads numbers as YAML 1.2 does: `1e-4` and `1.0e4` are floats, not strings
(PyYAML follows YAML 1.1, which needs a dot). Used for study files and `--set KEY=VALUE`."""

from __future__ import annotations

import re
from typing import Any

import yaml


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-4` and `1.0e4` as floats."""


Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_value(text: str) -> Any:
    """One YAML value, as a study file would read it."""
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)
