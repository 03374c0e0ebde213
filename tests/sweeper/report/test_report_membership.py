"""The report covers the study as it now stands: records of points no longer in it are listed
apart. Stores here hold real trial records (ids as the runner computes them), not training."""

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sweeper.cli import main as cli
from sweeper.report.membership import current_trial_ids, membership
from sweeper.study.space import points
from sweeper.store.local import Store
from sweeper.study.load import load_study
from sweeper.tune.trainable import TrialContext, trial_id_for

ROOT = Path(__file__).resolve().parents[3]


class Tables(HTMLParser):
    """Row counts per table id and the page's text."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, int] = {}
        self.text: list[str] = []
        self._table = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
        if tag == "tr" and self._table:
            self.rows[self._table] = self.rows.get(self._table, 0) + 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)


def study_file(tmp_path: Path, grid: list[int], seeds: list[int]) -> Path:
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data["space"] = {"resolution": {"grid": grid}}
    data["seeds"] = seeds
    path = tmp_path / f"study-{'-'.join(map(str, grid))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def record(study, point: dict, accuracy: float) -> dict:
    """A finished trial record as the trainable writes it (metrics of the reworked trainer)."""
    config = study.trial_config(point)
    res = point["resolution"]
    return {
        "trial_id": trial_id_for(TrialContext("/unused", study, 1, 0), point),
        "status": "finished", "error": None, "point": point, "config": config.to_dict(),
        "metrics": {"knn_top1": accuracy, "knn_val_top1": accuracy + 0.002, "linear_top1": accuracy + 0.01,
                    "knn_pixels_top1": 0.62, "knn_random_top1": 0.55, "test_size": 2000, "steps": 40,
                    "train_pflops": (res / 28) ** 2 * 1e-3, "eval_pflops": 1e-5, "total_pflops": (res / 28) ** 2 * 1e-3,
                    "wall_s": 5.0, "train_s": 4.5},
        "epochs": [{"epoch": e, "step": 10 * e, "resolution": res, "loss": 5.0 - e, "lr": 0.5,
                    "knn_val_top1": accuracy - 0.05 / e, "train_pflops_cum": e * 2.5e-4, "wall_s_cum": e,
                    "img_per_s": 100.0} for e in (1, 2, 3, 4)],
        "node": "here", "gpu_fraction": 0.0, "cpus": 1.0, "predicted_train_pflops": (res / 28) ** 2 * 1e-3,
    }


def old_record(study, point: dict, accuracy: float) -> dict:
    """The same record as written before the validation split: test-only numbers, per-epoch
    ``knn_top1``, no test size or steps."""
    rec = record(study, point, accuracy)
    rec["metrics"] = {k: v for k, v in rec["metrics"].items()
                      if k in ("knn_top1", "linear_top1", "knn_pixels_top1", "knn_random_top1", "train_pflops",
                               "eval_pflops", "wall_s")}
    rec["epochs"] = [{**{k: v for k, v in e.items() if k not in ("step", "knn_val_top1")}, "knn_top1": e["knn_val_top1"]}
                     for e in rec["epochs"]]
    return rec


def make_store(tmp_path: Path, make_record=record) -> tuple[Path, set[str], set[str]]:
    """A store whose grid shrank from [8, 14, 28] to [14, 28] (and kept its 3 seeds)."""
    old = load_study(study_file(tmp_path, [8, 14, 28], [0, 1, 2]))
    now = load_study(study_file(tmp_path, [14, 28], [0, 1, 2]))
    store = Store(tmp_path / "runs" / "quickstart")
    rng = np.random.default_rng(0)
    stale, current = set(), set()
    for point in points(old):
        rec = make_record(old, point, {8: 0.60, 14: 0.70, 28: 0.73}[point["resolution"]] + rng.normal(0, 0.002))
        store.write_record(rec)
        (stale if point["resolution"] == 8 else current).add(rec["trial_id"])
    (store.root / "study.yaml").write_text(yaml.safe_dump(now.to_dict(), sort_keys=False))
    return store.root, current, stale


def test_current_ids_are_the_runners_ids(tmp_path):
    root, current, stale = make_store(tmp_path)
    ids, why = current_trial_ids(root)
    assert why is None and ids == current and not ids & stale
    study = load_study(root / "study.yaml")
    assert ids == {trial_id_for(TrialContext(str(root), study, 1, 0), p) for p in points(study)}


def test_report_lists_records_of_removed_points_apart(tmp_path):
    root, current, stale = make_store(tmp_path)
    out = tmp_path / "report"
    assert cli(["report", str(root), "--out", str(out)]) == 0
    page = Tables()
    page.feed((out / "index.html").read_text(encoding="utf-8"))
    words = " ".join(page.text)
    assert page.rows["stale-table"] == 1 + len(stale)  # header + the three 8 px records
    assert page.rows["trials-table"] == 1 + len(current)
    assert "3 records of points no longer in the study" in words
    assert "6 trials: 6 finished" in words  # counts cover the current study only
    claims = words.split("8. Not in the current study")[-2]
    assert not re.search(r"\b8 px", claims)  # in no claim, front or check
    assert "Verdict (equal epochs): pre-training at 14 px fails" in words
    # the CLI rebuilt the tables from the records: the stale ones stay in the store
    assert len(pd.read_parquet(root / "results.parquet")) == 9


def test_the_report_command_reads_a_store_of_old_records(tmp_path):
    root, current, stale = make_store(tmp_path, old_record)
    out = tmp_path / "report"
    assert cli(["report", str(root), "--out", str(out)]) == 0
    page = Tables()
    page.feed((out / "index.html").read_text(encoding="utf-8"))
    words = " ".join(page.text)
    assert page.rows["stale-table"] == 1 + len(stale)
    assert "Verdict (equal epochs): pre-training at 14 px fails" in words
    assert "Intervals are 95% t-intervals over seeds (3 per configuration)" in words
    results = pd.read_parquet(root / "results.parquet")
    assert results["knn_val_top1"].isna().all() and results["test_size"].isna().all()


def test_unknown_membership_keeps_every_row_and_says_why(tmp_path):
    results = pd.DataFrame({"trial_id": ["a", "b"]})
    unchecked = membership(results, None, "the store has no study.yaml")
    assert unchecked.current.all() and unchecked.unchecked and "no study.yaml" in unchecked.note
    nothing_matches = membership(results, {"c"})
    assert nothing_matches.current.all() and "None of the 2 records" in nothing_matches.note
    some = membership(results, {"a"})
    assert some.current.tolist() == [True, False] and some.note is None
    (tmp_path / "study.yaml").write_text("name: [unclosed")
    ids, why = current_trial_ids(tmp_path)
    assert ids is None and why.startswith("its study.yaml")
