"""`--set KEY=VALUE`: a change to a study file given on the command line.

An override edits the file's mapping before any check runs, so it is validated exactly as the
same edit of the file would be, and gives the same `Study` (and so the same trial ids). KEY is a
dotted key path (`trial.epochs`, `space.resolution.grid`); VALUE is YAML, read by the study
file's own loader (`2`, `[14, 8]`, `{grid: [8, 16]}`). A problem in an overridden value is
reported at its `--set` instead of a file line.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweeper.study.schema import SPEC_KINDS
from sweeper.study.yaml_reader import StudyProblem, YamlDocument, load_yaml_value


class OverrideSyntaxError(ValueError):
    """A `--set` that is not KEY=VALUE; its text is one line for the user."""


@dataclass(frozen=True)
class Override:
    key: str  # dotted, as given
    text: str  # the value as given, YAML

    def __str__(self) -> str:
        return f"{self.key}={self.text}"


def parse_override(text: str) -> Override:
    """`trial.epochs=2` -> Override("trial.epochs", "2"); the first `=` splits (a value may hold one)."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise OverrideSyntaxError(f"--set {text!r}: expected KEY=VALUE, e.g. --set trial.epochs=2")
    if any(not part for part in key.split(".")):
        raise OverrideSyntaxError(f"--set {text!r}: {key!r} is no dotted key path (an empty part between dots)")
    return Override(key, value)


def parse_overrides(texts: list[str] | tuple[str, ...] | None) -> tuple[Override, ...]:
    return tuple(parse_override(t) for t in texts or ())


def apply_overrides(doc: YamlDocument, file: str, overrides: tuple[Override, ...]) -> None:
    """Set each override in `doc.data` (a mapping), in order, a later one winning, as later lines of
    an edited file would; the paths it sets are located at their `--set` from then on."""
    for override in overrides:
        keys = _keys_of(override.key.split("."))
        value = load_yaml_value(override.text, file, override.key)
        node, path = doc.data, ""
        for key in keys[:-1]:
            path = f"{path}.{key}" if path else key
            if not isinstance(node.get(key), dict):  # absent, null or a scalar: the edit makes it a mapping
                node[key] = {}
                _forget(doc, path, override.key)
            node = node[key]
        node[keys[-1]] = value.data
        _forget(doc, override.key, override.key)
        doc.problems.extend(StudyProblem(file, 0, p.key_path, p.message, origin=override.key) for p in value.problems)
        doc.rejected |= value.rejected | ({override.key} if value.problems else set())  # reported once, as a file's bad value is


def _forget(doc: YamlDocument, path: str, origin: str) -> None:
    """The file's value at `path` is replaced: its lines, problems and earlier overrides below it
    go, and problems there are located at the `--set` that replaced it."""
    def under(p: str) -> bool:
        return p == path or p.startswith((path + ".", path + "["))

    for table in (doc.lines, doc.origins):
        for p in [p for p in table if under(p)]:
            del table[p]
    doc.problems[:] = [p for p in doc.problems if not (p.key_path and under(p.key_path))]
    doc.rejected = {p for p in doc.rejected if not under(p)}
    doc.origins[path] = origin


def _keys_of(parts: list[str]) -> list[str]:
    """The mapping keys a dotted KEY names: one part each, but under `space` a knob path, whose
    dots are its own (`space.backbone.width.grid` is space -> `backbone.width` -> grid)."""
    if parts[0] == "space" and len(parts) > 1:
        knob = parts[1:-1] if len(parts) > 2 and parts[-1] in SPEC_KINDS else parts[1:]  # all but a trailing kind
        return ["space", ".".join(knob), *parts[1 + len(knob):]]
    return parts
