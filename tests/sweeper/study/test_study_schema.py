"""docs/studies.md documents every study and trial key with its default, and no other key."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from s3l_core.config import Stage, TrialConfig
from sweeper.study.schema import KNOBS, SPEC_KINDS, STUDY_KEYS, TOP_LEVEL_KEYS, format_default, render_key_tables, trial_key_docs

DOC = Path(__file__).resolve().parents[3] / "docs" / "studies.md"
ROW = re.compile(r"^\| `([^`]+)` \| [^|]+ \| `([^`]*)` \|")


def _rows() -> dict[str, str]:
    """key -> documented default, from the reference tables."""
    return {m[1]: m[2] for line in DOC.read_text().splitlines() if (m := ROW.match(line))}


def _config_fields(cls: type = TrialConfig, prefix: str = "trial.") -> dict[str, typing.Any]:
    """Dotted key -> default of every TrialConfig leaf, read straight from s3l_core.config."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_config_fields(hints[f.name], f"{prefix}{f.name}."))
            continue
        out[prefix + f.name] = f.default
        optional_sections = [a for a in typing.get_args(hints[f.name]) if dataclasses.is_dataclass(a)]
        if optional_sections:  # e.g. eval.finetune: null or a mapping
            out.update(_config_fields(optional_sections[0], f"{prefix}{f.name}."))
        if cls is TrialConfig and f.name == "resolution":
            out.update(_config_fields(Stage, "trial.resolution[]."))
    return out


def _unbracket(key: str) -> str:
    return re.sub(r"\[\d*\]", "", key)


def test_reference_tables_match_the_schema():
    assert render_key_tables() in DOC.read_text(), "docs/studies.md is stale: paste the output of `python -m sweeper.study.schema`"


@pytest.mark.parametrize("key", STUDY_KEYS, ids=lambda k: k.path)
def test_every_study_key_is_documented_with_its_default(key):
    rows = _rows()
    assert key.path in rows, f"{key.path} is missing from docs/studies.md"
    assert rows[key.path] == format_default(key.default)
    assert key.meaning and key.allowed


@pytest.mark.parametrize("path, default", sorted(_config_fields().items()))
def test_every_trial_field_is_documented_with_its_default(path, default):
    rows = _rows()
    assert path in rows, f"{path} (a TrialConfig field) is missing from docs/studies.md"
    expected = "required" if default is dataclasses.MISSING else format_default(default)
    assert rows[path] == expected


def test_every_trial_field_has_a_meaning():
    docs = trial_key_docs()
    assert {d.path for d in docs} == set(_config_fields())
    assert all(d.meaning and d.allowed for d in docs), [d.path for d in docs if not d.meaning]


def test_docs_name_no_key_that_does_not_exist():
    known = {k.path for k in STUDY_KEYS} | set(_config_fields())
    known |= set(KNOBS) | {f"trial.{k}" for k in KNOBS} | {f"space.{k}" for k in KNOBS}
    known |= {f"space.{k}.{kind}" for k in KNOBS for kind in SPEC_KINDS}
    known = {_unbracket(k) for k in known}
    assert {_unbracket(k) for k in _rows()} <= known

    text = re.sub(r"```.*?```", "", DOC.read_text(), flags=re.S)  # examples may show mistakes
    roots = set(TOP_LEVEL_KEYS) | {k.split(".")[0] for k in KNOBS}
    mentioned = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        if re.search(r"\.(ya?ml|md|py|html|png|json|csv|parquet)$", token):  # file names
            continue
        for part in re.findall(r"[a-z_]+(?:\[\d*\])?(?:\.[a-z_]+(?:\[\d*\])?)+", token):
            if part.split(".")[0].split("[")[0] in roots and part == token:
                mentioned.add(_unbracket(part))
    assert mentioned, "found no dotted keys in docs/studies.md"
    assert mentioned <= known, sorted(mentioned - known)
