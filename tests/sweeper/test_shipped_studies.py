"""Shipped studies: every GPU study has a CPU-sized twin in studies/cpu/, and the hints in their
comments are true to the schema (issue 12)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sweeper.study.load import load_study
from sweeper.study.model import StudyError

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted((REPO / "studies").glob("*.yaml"))
GPU_STUDIES = [p for p in STUDIES if load_study(p).resources.gpu > 0]


def test_there_are_gpu_studies_to_twin():
    assert {p.stem for p in GPU_STUDIES} >= {"resolution", "width", "depth", "data_fraction", "epochs", "s3l"}


@pytest.mark.parametrize("path", GPU_STUDIES, ids=lambda p: p.stem)
def test_every_gpu_study_has_a_cpu_twin_asking_the_same_question(path: Path):
    twin_path = REPO / "studies" / "cpu" / path.name
    assert twin_path.is_file(), f"{path.name} has no CPU twin in studies/cpu/"
    gpu, cpu = load_study(path), load_study(twin_path)
    assert cpu.resources.gpu == 0 and cpu.budget.gpu_hours is None
    assert cpu.dataset == "fashion-mnist-sample"  # shipped with s3l_core: runs offline
    assert set(cpu.space) <= set(gpu.space), "the twin varies no knob its GPU study does not"
    comments = "\n".join(line for line in twin_path.read_text().splitlines() if line.lstrip().startswith("#"))
    for knob in set(gpu.space) - set(cpu.space):  # 2 cores cannot afford every knob: the twin says which it fixes
        assert re.search(rf"{re.escape(knob)}[^\n]*fixed|fixed[^\n]*{re.escape(knob)}", comments), f"{twin_path.name} fixes {knob} without saying so"
    assert cpu.search.algorithm == gpu.search.algorithm
    assert cpu.name != gpu.name  # separate stores and reports
    assert str(twin_path.relative_to(REPO)) in twin_path.read_text(), "the twin's comment says how to run it"


def _commented_space_entries(text: str) -> list[tuple[str, object]]:
    """`# key: {spec}` alternatives written as comments under `space:` (several per line, split on 3+ spaces)."""
    entries, in_space = [], False
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            in_space = line.startswith("space:")
            continue
        comment = line.strip()
        if in_space and comment.startswith("# "):
            for chunk in re.split(r"\s{3,}", comment[2:]):
                entries.append(next(iter(yaml.safe_load(chunk).items())))
    return entries


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_commented_alternatives_in_shipped_studies_validate(path: Path, tmp_path: Path):
    text = path.read_text()
    data = yaml.safe_load(text)
    alternatives = _commented_space_entries(text)
    schedule = re.search(r"resolution: \d+ +# or a schedule: (\[.*\])", text)
    if schedule:
        data_with_schedule = {**data, "trial": {**data["trial"], "resolution": yaml.safe_load(schedule.group(1))}}
        copy = tmp_path / "schedule.yaml"
        copy.write_text(yaml.safe_dump(data_with_schedule))
        load_study(copy)
    for key, spec in alternatives:
        variant = {**data, "space": {**data["space"], key: spec}, "search": {"algorithm": "random", "num_samples": 2}}
        copy = tmp_path / f"{key}.yaml"
        copy.write_text(yaml.safe_dump(variant))
        load_study(copy)  # raises StudyError naming the comment's mistake


def test_storage_and_report_take_object_store_uris_and_refuse_malformed_ones(tmp_path: Path):
    """docs/cluster.md's object-store recipe: `storage: s3://bucket/prefix` validates (the store is
    reached only by `run`); an unknown scheme or a URI without a bucket is refused at its line."""
    data = yaml.safe_load((REPO / "studies" / "resolution.yaml").read_text())
    copy = tmp_path / "uri.yaml"
    copy.write_text(yaml.safe_dump({**data, "storage": "s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http", "report": "gs://b/reports"}))
    study = load_study(copy)
    assert study.storage.startswith("s3://bucket/runs") and study.report == "gs://b/reports"
    for storage, message in (("ftp://host/runs", "unknown object-store scheme 'ftp'"), ("s3://", "names no bucket")):
        copy.write_text(yaml.safe_dump({**data, "storage": storage}))
        with pytest.raises(StudyError, match=message):
            load_study(copy)
