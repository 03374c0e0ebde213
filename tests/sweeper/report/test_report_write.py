import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synthetic
import yaml

from sweeper.report import write_report


class PageParser(HTMLParser):
    """Collects what the assertions need: img srcs, script count, tables' header cells, text."""

    def __init__(self):
        super().__init__()
        self.images, self.scripts, self.text, self.ids = [], 0, [], set()
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        self.text.append(data)


def parse(index: Path) -> PageParser:
    parser = PageParser()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def build(store: Path, tmp_path: Path) -> tuple[Path, PageParser, str]:
    index = write_report(store, tmp_path / "report" / "nested")  # created if missing
    return index, parse(index), index.read_text(encoding="utf-8")


def test_full_report_has_every_section_and_relative_images(make_store, tmp_path):
    index, page, text = build(make_store(60, running=0, failed=0.1), tmp_path)
    assert index.name == "index.html"
    assert {"headline", "verdict", "pareto", "knobs", "curves", "s3l", "cost-model", "trials", "stale", "study"} <= page.ids
    assert len(page.images) == 7  # pareto, 3 knobs, learning curves, s3l, cost model
    for src in page.images:
        assert not src.startswith(("/", "http", "file:")), src
        data = (index.parent / src).read_bytes()
        assert data.startswith(b"\x89PNG")
    assert page.scripts == 1
    words = " ".join(page.text)
    assert "Pre-training at 12 px (equal epochs, width=1, data fraction=1)" in words and "against 28 px" in words
    assert "Verdict (equal epochs): " in words and "Rule: a scaled-down setting holds when" in words
    assert "within 1 point of it" in words
    assert "PARTIAL" not in words
    # no temp files left behind; nothing fetched from the network
    assert not list(index.parent.glob(".*.tmp"))
    assert not re.search(r"""(src|href)=["']https?:""", text)


def test_one_trial(make_store, tmp_path):
    index, page, _ = build(make_store(1, failed=0.0, knobs=("resolution",)), tmp_path)
    words = " ".join(page.text)
    assert "1 trial: 1 finished" in words
    assert "No cheaper configuration holds within 1 point" in words
    assert "Verdict: none." in words
    assert "no scaled-down configuration" in words  # the S3L check explains why it is empty
    assert all((index.parent / src).exists() for src in page.images)


def test_every_trial_failed_gives_messages_not_plots(make_store, tmp_path):
    index, page, text = build(make_store(12, all_failed=True), tmp_path)
    words = " ".join(page.text)
    # only the learning curves of how far the failed trials got; no accuracy/cost plots
    assert page.images == ["fig_learning_curves.png"]
    assert "No trial has finished" in words
    assert "No finished trials: no Pareto front yet." in words
    assert "12 trials: 0 finished, 12 failed" in words
    assert "Failed trials" in words
    assert [p.name for p in index.parent.glob("*.png")] == ["fig_learning_curves.png"]


def test_running_study_is_marked_partial(make_store, tmp_path):
    _, page, _ = build(make_store(40, running=3, pending=2, state="running"), tmp_path)
    assert any("PARTIAL RESULTS: the study is still running" in t for t in page.text)


def test_crashed_and_unknown_state_are_marked(make_store, tmp_path):
    index, page, _ = build(make_store(20, running=2, state="crashed"), tmp_path)
    assert any("PARTIAL RESULTS: the study crashed" in t for t in page.text)
    answer = (index.parent / "summary.txt").read_text().splitlines()  # what `run` and `report` print
    assert answer[0].startswith("PARTIAL RESULTS: the study crashed") and any(line.startswith("Verdict") for line in answer[1:])
    _, page, _ = build(make_store(20, running=2, state=None), tmp_path)
    assert any("POSSIBLY PARTIAL" in t and "no state.json" in t for t in page.text)


def test_study_name_and_error_strings_are_escaped(make_store, tmp_path):
    evil = "<script>alert(1)</script>"
    store = make_store(30, name=evil, failed=0.3)
    results = pd.read_parquet(store / "results.parquet")
    failed = results.index[results["status"] == "failed"]
    results.loc[failed[0], "error"] = 'boom <img src=x onerror="alert(2)"> & </td></tr>'
    results.loc[failed[1], "node"] = "<b>node</b>"
    results.to_parquet(store / "results.parquet")
    _, page, text = build(store, tmp_path)
    assert page.scripts == 1  # only the report's own sorting script
    assert "<script>alert(1)" not in text and "<img src=x" not in text and "<b>node" not in text
    assert html.escape(evil) in text
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt; &amp; &lt;/td&gt;&lt;/tr&gt;" in text
    words = "".join(page.text)
    assert evil in words  # displayed as text
    assert 'onerror="alert(2)"' in words


def test_nan_linear_top1_and_linear_as_primary_objective(make_store, tmp_path):
    store = make_store(24, linear_nan=1.0, objectives={"linear_top1": "max", "gpu_hours": "min"})
    _, page, _ = build(store, tmp_path)
    words = " ".join(page.text)
    assert "No finished trial has a linear top-1 value yet." in words
    assert page.images == [] or all(not src.endswith("pareto.png") for src in page.images)
    store = make_store(24, linear_nan=0.5, objectives={"linear_top1": "max", "gpu_hours": "min"})
    _, page, _ = build(store, tmp_path)
    assert any(src.endswith("pareto.png") for src in page.images)
    assert "linear top-1 (95% CI" in " ".join(page.text)


def test_missing_epochs_and_provenance_still_render(make_store, tmp_path):
    store = make_store(10)
    (store / "epochs.parquet").unlink()
    (store / "provenance.json").unlink()
    _, page, _ = build(store, tmp_path)
    words = " ".join(page.text)
    assert "No per-epoch kNN evaluations recorded yet." in words
    assert "provenance.json not found" in words


def test_stale_figures_are_removed_and_rewrite_is_clean(make_store, tmp_path):
    report = tmp_path / "r"
    write_report(make_store(30), report)
    manifest = report / ".written.json"  # what the last report wrote: only those files are ever deleted
    (report / "fig_knob_9_old.png").write_bytes(b"old")  # as a report of a study with one more knob wrote it
    manifest.write_text(json.dumps([*json.loads(manifest.read_text()), "fig_knob_9_old.png"]))
    (report / "fig_mine.png").write_bytes(b"mine")  # named like a figure, but no report wrote it
    (report / "notes.txt").write_text("mine")
    write_report(make_store(30), report)
    assert not (report / "fig_knob_9_old.png").exists()
    assert (report / "notes.txt").read_text() == "mine" and (report / "fig_mine.png").read_bytes() == b"mine"


def test_a_symlinked_report_folder_is_refused_and_its_target_untouched(make_store, tmp_path):
    from s3l_core.atomic import UnsafeFolderError

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "fig_precious.png").write_bytes(b"precious")
    (tmp_path / "r").symlink_to(elsewhere)
    with pytest.raises(UnsafeFolderError, match="is a symbolic link"):
        write_report(make_store(30), tmp_path / "r")
    assert [p.name for p in elsewhere.iterdir()] == ["fig_precious.png"]


def test_generated_store_matches_the_contract(make_store):
    store = make_store(50, running=1)
    results = pd.read_parquet(store / "results.parquet")
    epochs = pd.read_parquet(store / "epochs.parquet")
    study = yaml.safe_load((store / "study.yaml").read_text())
    assert results["trial_id"].str.fullmatch(r"[0-9a-f]{12}").all()
    assert results["trial_id"].is_unique
    assert set(results["status"]) <= {"finished", "failed", "running", "pending", "skipped_budget"}
    assert results.loc[results["status"] != "finished", "knn_top1"].isna().all()
    assert {"trial_id", "epoch", "step", "resolution", "loss", "lr", "knn_val_top1", "train_pflops_cum",
            "wall_s_cum"} <= set(epochs.columns)
    assert list(study["objectives"]) == ["knn_top1", "train_pflops"]
    assert json.loads((store / "provenance.json").read_text())["git_sha"]
    multi = results[results["resolution_schedule"] == "14x8,28x2"]
    assert (multi["resolution"] == 28).all()


def test_random_search_knob_categorical_knob_and_three_objectives(tmp_path):
    results, epochs = synthetic.make_tables(40, knobs=("method", "backbone.depth"))
    results["optimizer.lr"] = np.random.default_rng(0).uniform(0.01, 1.0, len(results))
    study = synthetic.make_study(
        "nsga", ["method", "backbone.depth"], [0], {"knn_top1": "max", "train_pflops": "min", "peak_mem_mb": "min"}
    )
    study["space"]["optimizer.lr"] = {"loguniform": [0.01, 1.0]}
    store = synthetic.write_store(tmp_path / "store", results, epochs, study, state="interrupted")
    index, page, _ = build(store, tmp_path)
    assert {"fig_knob_0_method.png", "fig_knob_1_backbone_depth.png", "fig_knob_2_optimizer_lr.png"} <= set(
        page.images)
    words = " ".join(page.text)
    assert "PARTIAL RESULTS: the study was interrupted" in words
    assert "peak memory MB (min)" in words  # the declared third objective drives the Pareto set


def test_minimal_columns_and_empty_results(tmp_path):
    minimal = tmp_path / "minimal"
    minimal.mkdir()
    pd.DataFrame({
        "trial_id": ["a", "b", "c"], "status": ["finished", "finished", "running"], "resolution": [8, 16, 16],
        "seed": [0, 0, 0], "knn_top1": [0.5, 0.6, np.nan], "train_pflops": [1.0, 4.0, np.nan],
    }).to_parquet(minimal / "results.parquet")
    (minimal / "study.yaml").write_text(yaml.safe_dump({"name": "minimal", "space": {"resolution": {"grid": [8, 16]}}}))
    _, page, _ = build(minimal, tmp_path)
    words = " ".join(page.text)
    assert "Pre-training at 8 px (equal epochs): -10.0 points against 16 px (no interval" in words
    assert "POSSIBLY PARTIAL" in words

    empty = tmp_path / "empty"
    empty.mkdir()
    pd.DataFrame({"trial_id": pd.Series([], dtype=str)}).to_parquet(empty / "results.parquet")
    _, page, _ = build(empty, tmp_path)
    assert "The results table is empty." in " ".join(page.text)

    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "no-such-store", tmp_path / "r")


def test_knob_values_with_markup_and_dollars_are_plain_text(tmp_path):
    results, epochs = synthetic.make_tables(12, knobs=("method",), failed=0.0)
    results["method"] = np.where(results["method"] == "byol", "<i>by$ol</i>", "sim$clr$")
    study = synthetic.make_study("odd", ["method"], [0])
    store = synthetic.write_store(tmp_path / "store", results, epochs, study)
    index, page, text = build(store, tmp_path)
    assert "fig_knob_0_method.png" in page.images  # matplotlib did not try to parse "$...$" as math
    assert "<i>" not in text and "&lt;i&gt;by$ol&lt;/i&gt;" in text


def test_a_store_of_the_old_shape_renders_with_missing_columns_as_absent(tmp_path):
    results, epochs = synthetic.make_tables(18, knobs=("resolution", "backbone.width"), old_shape=True, failed=0.0)
    assert "knn_val_top1" not in results and "test_size" not in results and "knn_top1" in epochs
    study = synthetic.make_study("old", ["resolution", "backbone.width"], [0])
    store = synthetic.write_store(tmp_path / "store", results, epochs, study)
    index, page, _ = build(store, tmp_path)
    words = " ".join(page.text)
    assert "Verdict (equal epochs): " in words
    assert "no test-set size recorded" in words  # one seed, no binomial interval possible: said, not invented
    assert "kNN top-1 on the test (an older store without a validation split) split" in words
    assert "fig_learning_curves.png" in page.images


def test_a_random_search_gets_fitted_trends_in_the_s3l_check(tmp_path):
    results, epochs = synthetic.make_tables(36, knobs=("backbone.width", "data_fraction"), failed=0.0)
    study = synthetic.make_study("random", ["backbone.width", "data_fraction"], [0, 1, 2, 3])
    study["search"] = {"algorithm": "random", "num_samples": 9, "seed": 0}
    store = synthetic.write_store(tmp_path / "store", results, epochs, study)
    _, page, _ = build(store, tmp_path)
    words = " ".join(page.text)
    assert "fig_s3l_trend.png" in page.images and "fig_s3l.png" not in page.images
    assert "Verdict (fitted trends): width 0.25x fails" in words
    assert "Fitted trend over 36 trials, width from width 1x down to width 0.25x:" in words


class AttributeParser(HTMLParser):
    """Every (tag, attribute, value) of a page."""

    def __init__(self):
        super().__init__()
        self.attributes: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.attributes.extend((tag, name, value) for name, value in attrs)


def test_an_attribute_injection_payload_stays_inside_its_attribute(make_store, tmp_path):
    """A failed trial's error is shown in full in a title attribute: a `"` in it must not end the
    attribute and add an event handler."""
    payload = 'x" onmouseover="alert(1)" data-x="'
    store = make_store(20, failed=0.3)
    results = pd.read_parquet(store / "results.parquet")
    results.loc[results.index[results["status"] == "failed"][0], "error"] = payload
    results.to_parquet(store / "results.parquet")
    index, _, text = build(store, tmp_path)
    parser = AttributeParser()
    parser.feed(text)
    assert not [a for a in parser.attributes if a[1].startswith("on")]
    assert ("td", "title", payload) in parser.attributes


def test_a_corrupt_checkpoint_restart_is_a_banner_and_a_note_in_the_trials_table(make_store, tmp_path):
    store = make_store(20, failed=0.0)
    results = pd.read_parquet(store / "results.parquet")
    results["resumed_from_corrupt"] = False
    results.to_parquet(store / "results.parquet")
    _, page, _ = build(store, tmp_path)
    words = "".join(page.text)
    assert "because a checkpoint was corrupt" not in words and "restarted: corrupt checkpoint" not in words
    results.loc[results.index[0], "resumed_from_corrupt"] = True
    results.to_parquet(store / "results.parquet")
    _, page, _ = build(store, tmp_path)
    words = "".join(page.text)
    assert "Note: 1 trial restarted from scratch because a checkpoint was corrupt" in words
    assert words.count("restarted: corrupt checkpoint") == 1


@pytest.mark.parametrize("fault", ["fsync", "replace"])
def test_a_report_that_fails_to_sync_or_rename_keeps_the_old_report(make_store, tmp_path, monkeypatch, fault: str):
    import errno
    import os

    store = make_store(12, failed=0.0)
    index, _, before = build(store, tmp_path)
    old_files = {p.name: p.read_bytes() for p in index.parent.iterdir()}
    results = pd.read_parquet(store / "results.parquet")
    results.loc[results.index[0], "error"] = "changed"
    results.loc[results.index[0], "status"] = "failed"
    results.to_parquet(store / "results.parquet")

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, fault, full_disk)
    with pytest.raises(OSError):
        write_report(store, index.parent)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in index.parent.iterdir()} == old_files


@pytest.mark.parametrize("state", ["finished", "interrupted"])
def test_a_store_short_of_the_studys_plan_is_partial_counted_against_the_planned_trial_ids(tmp_path, state):
    """Ctrl-C left state.json `finished` and a report of "0 trials: 0 finished" with no banner; a
    store with 4 of 6 planned trials stated its verdict with no word about the 2 missing (issue 24).
    Counted against the study's trial ids: one started (a checkpoint, no record), one not started."""
    import shutil

    from sweeper.report.membership import study_plan

    store = tmp_path / "runs" / "upgrade-v1"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "store-0.1.0" / "upgrade-v1", store)
    (store / "study.yaml").write_text((store / "study.yaml").read_text().replace("- 12\n", "- 12\n    - 16\n    - 20\n"))
    (store / "state.json").write_text(json.dumps({"state": state}))
    plan = study_plan(store)
    assert plan is not None and plan.planned == 4
    recorded = {p.stem for p in (store / "trials").glob("*.json")}
    started = sorted(plan.ids - recorded)[0]
    (store / "ray" / "attempt-1" / started / "checkpoint_000000").mkdir(parents=True)
    index, page, _ = build(store, tmp_path)
    words = " ".join(page.text)
    assert "4 planned: 2 finished, 1 interrupted, 1 not started" in words, words[:600]
    first = (index.parent / "summary.txt").read_text().splitlines()[0]
    assert first.startswith("PARTIAL RESULTS") and "4 planned: 2 finished, 1 interrupted, 1 not started" in first


def test_a_complete_store_has_no_partial_banner(tmp_path):
    import shutil

    store = tmp_path / "runs" / "upgrade-v1"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "store-0.1.0" / "upgrade-v1", store)
    _, page, _ = build(store, tmp_path)
    assert "PARTIAL" not in " ".join(page.text)


def test_a_verdict_from_one_seed_per_arm_says_so_in_the_verdict_line(tmp_path):
    import shutil

    store = tmp_path / "runs" / "upgrade-v1"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "store-0.1.0" / "upgrade-v1", store)
    index, _, _ = build(store, tmp_path)
    answer = (index.parent / "summary.txt").read_text()
    verdict = next(line for line in answer.splitlines() if line.startswith("Verdict"))
    assert "pre-training at 8 px" in verdict and " (one seed) (" in verdict, verdict
    assert "approximate" in answer and "3 seeds per arm" in answer
