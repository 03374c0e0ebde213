"""Safe, line-tracking YAML loading for study files.

PyYAML's `safe_load` forgets where each value came from and silently keeps the last of
two duplicate keys. Here the file is composed into a node tree with `yaml.SafeLoader`
(no object is ever constructed from a tag) and walked by hand, so every key path
(`space.resolution.grid[2]`) maps to its line, duplicates are reported with both lines,
and any non-standard tag (`!!python/object:...`) is a problem instead of an object.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from s3l_core.quoting import brief
from s3l_core.yaml12 import Yaml12Loader

MAX_STUDY_BYTES = 1_000_000
MAX_NODES = 100_000  # aliases can make a small file expand exponentially
MAX_DEPTH = 64

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp")}


@dataclass(frozen=True)
class StudyProblem:
    """One problem (or warning) in a study file, formatted `file:line key.path: message`; a value
    given on the command line (`origin`, the KEY of its `--set KEY=VALUE`) as `file --set KEY: message`."""

    file: str
    line: int
    key_path: str
    message: str
    origin: str = ""

    def __str__(self) -> str:
        if self.origin:  # no file line to point at: name the flag the value came from
            where = f"{self.file} --set {self.origin}"
            return f"{where}: {self.message}" if self.key_path in ("", self.origin) else f"{where} {self.key_path}: {self.message}"
        where = f"{self.file}:{self.line}" if self.line else self.file  # line 0: the file as a whole (missing, a directory)
        return f"{where} {self.key_path}: {self.message}" if self.key_path else f"{where}: {self.message}"


class StudyLoader(Yaml12Loader):
    """The safe loader of study files: `1e-4` and `1.0e4` are floats (YAML 1.2), not strings."""


@dataclass
class YamlDocument:
    """Plain data of a study file plus the line of every key path."""

    data: Any = None
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[StudyProblem] = field(default_factory=list)
    rejected: set[str] = field(default_factory=set)  # paths whose value was dropped (bad tag, ...)
    origins: dict[str, str] = field(default_factory=dict)  # path -> the `--set` KEY that gave its value

    def line_of(self, path: str) -> int:
        """Line of `path`, else of its closest ancestor that the file spells out, else 1."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = parent_path(path)
        return 1

    def locate(self, file: str, path: str, message: str) -> StudyProblem:
        """A problem at `path`: at its line in the file, or at the `--set` its value (or an
        ancestor's) came from, whichever is closer."""
        at = path
        while at:
            if at in self.origins:
                return StudyProblem(file, 0, path, message, origin=self.origins[at])
            if at in self.lines:
                break
            at = parent_path(at)
        return StudyProblem(file, self.line_of(path), path, message)


def parent_path(path: str) -> str:
    """`a.b[2]` -> `a.b` -> `a` -> ``."""
    if path.endswith("]") and "[" in path:
        return path[: path.rindex("[")]
    return path.rpartition(".")[0]


def join_path(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


def load_yaml(path: str | Path, max_bytes: int = MAX_STUDY_BYTES) -> YamlDocument:
    """Read and compose `path`; problems are collected on the result, never raised."""
    doc = YamlDocument()
    name = str(path)

    def fail(line: int, message: str) -> YamlDocument:
        doc.problems.append(StudyProblem(name, line, "", message))
        return doc

    p = Path(path)
    try:
        info = p.stat()
    except OSError as exc:
        return fail(0, f"cannot read the study file: {exc.strerror or exc}")
    size = info.st_size
    if stat.S_ISDIR(info.st_mode):
        return fail(0, "is a directory, not a study file")
    if not stat.S_ISREG(info.st_mode):  # opening a FIFO blocks until a writer comes; a device never ends
        return fail(0, "is not a regular file (a FIFO, device or socket), not a study file")
    if size > max_bytes:
        return fail(1, f"file is {_size(size)}; a study file may be at most {_size(max_bytes)}")
    try:
        with p.open("rb") as f:
            raw = f.read(max_bytes + 1)  # a special file may report size 0 and never end
    except OSError as exc:
        return fail(1, f"cannot read the study file: {exc.strerror or exc}")
    if len(raw) > max_bytes:
        return fail(1, f"file is larger than {_size(max_bytes)}, the most a study file may be")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return fail(line, f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})")
    root = _compose(text, name, doc)
    if doc.problems:
        return doc
    if root is None:
        return fail(1, "the file is empty; a study needs at least `name:` and `objectives:`")
    if not doc.problems and not isinstance(doc.data, dict):
        return fail(root.start_mark.line + 1, f"a study must be a mapping of keys (name:, trial:, space:, ...), got {_kind(doc.data)}")
    return doc


def load_yaml_value(text: str, name: str, path: str) -> YamlDocument:
    """One value given as YAML text (a `--set` VALUE: a scalar or a flow collection), read exactly
    as the same text in a study file would be; its problems carry `path`, their line is of `text`."""
    doc = YamlDocument()
    _compose(text, name, doc, path)
    return doc


def _compose(text: str, name: str, doc: YamlDocument, path: str = "") -> Node | None:
    """Compose `text` and walk it into `doc.data` (at key path `path`); problems onto `doc`."""

    def fail(line: int, message: str) -> None:
        doc.problems.append(StudyProblem(name, line, path, message))

    try:
        root = yaml.compose(text, Loader=StudyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return fail(mark.line + 1 if mark else 1, _syntax_message(exc))
    except yaml.reader.ReaderError as exc:
        return fail(text[: exc.position].count("\n") + 1, f"YAML error: {exc.reason}: character #x{exc.character:04x} is not allowed")
    except yaml.YAMLError as exc:
        return fail(1, f"YAML error: {exc}")
    except RecursionError:
        return fail(1, "YAML is nested too deeply")
    if root is None:  # an empty document: null, as an empty value in a file is
        return None
    try:
        doc.data = _Walker(name, doc).walk(root, path, 0)
    except _TooBig as exc:
        doc.data = None
        return fail(exc.line, str(exc))
    return root


class _TooBig(Exception):
    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


class _Walker:
    """Builds plain Python data from composed nodes, recording lines and problems."""

    def __init__(self, name: str, doc: YamlDocument):
        self.name = name
        self.doc = doc
        self.count = 0
        self.constructor = StudyLoader("")

    def problem(self, node: Node, path: str, message: str, *, rejected: bool = False) -> None:
        self.doc.problems.append(StudyProblem(self.name, node.start_mark.line + 1, path, message))
        if rejected:  # the value was dropped: later checks must not complain about it again
            self.doc.rejected.add(path)

    def walk(self, node: Node, path: str, depth: int) -> Any:
        self.count += 1
        line = node.start_mark.line + 1
        if self.count > MAX_NODES:
            raise _TooBig(f"the YAML expands to more than {MAX_NODES} values (anchors and aliases?)", line)
        if depth > MAX_DEPTH:
            raise _TooBig(f"the YAML is nested more than {MAX_DEPTH} levels deep", line)
        if isinstance(node, MappingNode):
            if node.tag != _TAG + "map":
                return self.bad_tag(node, path)
            return self.mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            if node.tag != _TAG + "seq":
                return self.bad_tag(node, path)
            out = []
            for i, item in enumerate(node.value):
                item_path = f"{path}[{i}]"
                self.doc.lines.setdefault(item_path, item.start_mark.line + 1)
                out.append(self.walk(item, item_path, depth + 1))
            return out
        assert isinstance(node, ScalarNode)
        if node.tag not in _SCALAR_TAGS:
            return self.bad_tag(node, path)
        return self.scalar(node, path)

    def mapping(self, node: MappingNode, path: str, depth: int) -> dict:
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _TAG + "merge":
                self.problem(key_node, path, "YAML merge keys ('<<') are not supported; write the keys out")
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag not in _SCALAR_TAGS:
                self.problem(key_node, path, "a key must be a plain word or number")
                continue
            key = self.scalar(key_node, path)
            key_path = join_path(path, key)
            if key in first_line:
                self.problem(key_node, key_path, f"duplicate key '{key}' (lines {first_line[key]} and {line})")
                continue
            first_line[key] = line
            self.doc.lines.setdefault(key_path, line)
            out[key] = self.walk(value_node, key_path, depth + 1)
        return out

    def scalar(self, node: ScalarNode, path: str) -> Any:
        tag = node.tag
        if tag in (_TAG + "str", _TAG + "timestamp"):
            return node.value  # dates stay text: no study key holds a date
        try:
            if tag == _TAG + "null":
                return None
            if tag == _TAG + "bool":
                return self.constructor.construct_yaml_bool(node)
            if tag == _TAG + "int":
                return self.constructor.construct_yaml_int(node)
            return self.constructor.construct_yaml_float(node)
        except (ValueError, TypeError, KeyError):
            self.problem(node, path, f"{brief(node.value)} is not a valid {short_tag(tag)}", rejected=True)
            return None

    def bad_tag(self, node: Node, path: str) -> None:
        self.problem(node, path, f"tag '{short_tag(node.tag)}' is not allowed: a study is plain YAML data", rejected=True)
        return None


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    parts = []
    if exc.context:
        same_line = exc.context_mark is None or exc.problem_mark is None or exc.context_mark.line == exc.problem_mark.line
        parts.append(exc.context if same_line else f"{exc.context} (line {exc.context_mark.line + 1})")
    if exc.problem:
        parts.append(exc.problem)
    text = "YAML syntax error: " + (", ".join(parts) or "invalid YAML")
    if exc.problem and "'\\t'" in exc.problem:
        text += "; indent with spaces, not tabs"
    return text


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n} bytes"


def _kind(value: Any) -> str:
    """What a document that is no mapping holds, without quoting it: the document is the whole file
    (a study symlinked to a text file is one long string)."""
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"a single value (text, {len(value):,} characters)"
    return f"a single value (a {type(value).__name__})"
