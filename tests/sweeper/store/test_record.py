"""Trial records read back from a store: every field typed, a bad one skipped and named."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from sweeper.store.record import record_problem
from sweeper.store.results import epochs_frame, results_frame
from sweeper.store.local import Store

FIXTURE_STORE = Path(__file__).parents[1] / "fixtures" / "store-0.1.0" / "upgrade-v1"
GOOD = json.loads(next((FIXTURE_STORE / "trials").glob("*.json")).read_text())  # written by a real run
WRONG_VALUES = ("12", "x", [1, 2], {"a": 1}, True, None, -1, 1.5)


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    """Every field of a record, nested ones included, as a dotted path (`epochs.0.loss`)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        path = f"{prefix}{key}"
        yield path
        yield from _paths(child, path + ".")


def _with(record: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(record)
    node: Any = out
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return out


def _without(record: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(record)
    node: Any = out
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[int(last) if isinstance(node, list) else last]
    return out


def test_a_record_written_by_a_real_run_is_accepted() -> None:
    assert record_problem(GOOD, GOOD["trial_id"]) is None


def test_every_field_of_the_wrong_type_is_refused_or_read_by_every_table_without_error() -> None:
    """The fuzz: each field of a real record set to each wrong value. A refused record names the
    field at fault; an accepted one must go through every reader of records."""
    refused = 0
    for path in _paths(GOOD):
        for value in WRONG_VALUES:
            record = _with(GOOD, path, value)
            problem = record_problem(record, GOOD["trial_id"])
            if problem is None:
                results_frame([record])
                epochs_frame([record])
                continue
            refused += 1
            leaf = path.rsplit(".", 1)[-1]
            assert leaf in problem or path.split(".")[0] in problem, (path, value, problem)
    assert refused > 300  # most wrong values of most fields are refused, not merely survived


@pytest.mark.parametrize(
    "path, value, named",
    [("metrics.wall_s", "12", "metrics.wall_s"), ("gpu_fraction", "x", "gpu_fraction"), ("config.resolution", [1, 2], "config.resolution"),
     ("epochs", [1, 2], "epochs[0]"), ("config.backbone.width", "wide", "backbone.width"), ("epochs.0.loss", [0.1], "epochs[0].loss"),
     ("point", [], "point"), ("metrics", [], "metrics"), ("config.eval.knn_k", 1.5, "eval.knn_k")],
)  # fmt: skip
def test_the_wrong_types_that_crashed_status_and_report_are_refused_by_name(path: str, value: Any, named: str) -> None:
    assert named in (record_problem(_with(GOOD, path, value), GOOD["trial_id"]) or "")


@pytest.mark.parametrize("path", ["config.resolution", "config.backbone.width", "config.eval", "epochs.0.epoch"])
def test_a_record_missing_a_field_every_record_has_is_refused(path: str) -> None:
    """A config without `resolution` must not read as the default 28 px."""
    problem = record_problem(_without(GOOD, path), GOOD["trial_id"])
    assert problem is not None and path.rsplit(".", 1)[-1] in problem


def test_status_and_report_skip_each_bad_record_with_one_warning_naming_its_file_and_field(tmp_path: Path, capsys, caplog) -> None:
    from sweeper.cli import main

    root = tmp_path / "runs" / "upgrade-v1"
    shutil.copytree(FIXTURE_STORE, root)
    resolved = (root / "study.yaml").read_text().replace("/tmp/fixture/reports", str(tmp_path / "reports"))
    (root / "study.yaml").write_text(resolved.replace("/tmp/fixture/runs", str(tmp_path / "runs")))
    store = Store(root)
    bad = {"aaaaaaaaaaa1": ("metrics.wall_s", "12"), "aaaaaaaaaaa2": ("gpu_fraction", "x"), "aaaaaaaaaaa3": ("config.resolution", [1, 2]),
           "aaaaaaaaaaa4": ("epochs", [1, 2])}  # fmt: skip
    for tid, (path, value) in bad.items():
        store.record_path(tid).write_text(json.dumps(_with({**GOOD, "trial_id": tid}, path, value)))
    store.record_path("aaaaaaaaaaa5").write_text(json.dumps(_without({**GOOD, "trial_id": "aaaaaaaaaaa5"}, "config.resolution")))
    with caplog.at_level("WARNING", logger="sweeper.store.local"):
        assert main(["status", str(root)]) == 0
        assert "state finished, 2 of 2 planned trials finished" in capsys.readouterr().out
        assert main(["report", str(root)]) == 0
    assert (tmp_path / "reports" / "upgrade-v1" / "index.html").is_file()
    for tid in [*bad, "aaaaaaaaaaa5"]:
        lines = [r.getMessage() for r in caplog.records if f"{tid}.json" in r.getMessage()]
        assert lines and all("resolution" in line or "wall_s" in line or "gpu_fraction" in line or "epochs" in line for line in lines), tid


@pytest.mark.parametrize("name_line", ["name: ../../../../escaped", "name: {tmp}/escaped", None])
def test_report_of_a_store_whose_study_yaml_is_bad_is_one_line_and_writes_nothing(tmp_path: Path, capsys, name_line: str | None) -> None:
    """`report STORE` built the report path from the store's own study.yaml unchecked: `name:
    ../../../../escaped` wrote index.html outside every report folder; no `name` was a KeyError."""
    from sweeper.cli import main

    root = tmp_path / "deep" / "er" / "runs" / "upgrade-v1"
    shutil.copytree(FIXTURE_STORE, root)
    lines = [line for line in (root / "study.yaml").read_text().splitlines() if not line.startswith(("name:", "report:"))]
    lines += [f"report: {tmp_path / 'deep' / 'er' / 'reports'}"] + ([name_line.format(tmp=tmp_path)] if name_line else [])
    (root / "study.yaml").write_text("\n".join(lines) + "\n")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study.yaml does not validate" in err[0] and "name" in err[0], err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # no table rewritten, no report anywhere
