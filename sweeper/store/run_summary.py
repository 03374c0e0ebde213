"""What a `run` ends with, and the answer of a run that has nothing to do.

A re-run of a finished grid or random study whose tables and report are newer than its
records launches nothing and rebuilds nothing: it says so from the store, without importing
Ray or torch and without taking the store's lock (it writes nothing). The check reads the
trial records once, so it grows with the store only as reading them does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sweeper.store.claim import report_location
from sweeper.study.plan import is_sampled, pending_trials, unique_trials
from sweeper.report.files import ANSWER_NAME, INDEX_NAME
from sweeper.store.local import MARKER_NAME, Location, Store, store_root
from sweeper.study.model import Study


@dataclass(frozen=True)
class RunSummary:
    store: Location  # a local folder, or the object store's URI
    total: int
    reused: int
    launched: int
    finished: int
    failed: int
    report: Location | None
    nodes: int = 0  # the hosts (machines) the study's finished trials ran on
    answer: str | None = None  # the report's warnings, verdict and headline (its summary.txt)


def nothing_to_run(study: Study, storage: str | None, report: bool) -> RunSummary | None:
    """The summary of a run with nothing to launch and nothing to rebuild, or None when this run
    has work: a sampled study, a trial without a finished record, a study changed since its
    store was written, a state other than finished, or tables or a report older than a record.
    Only local stores and reports are answered here; an object store takes the full path."""
    root, report_dir = store_root(study, storage), report_location(study) if report else None
    if is_sampled(study) or not isinstance(root, Path) or (report and not isinstance(report_dir, Path)):
        return None
    store = Store(root)
    try:
        if json.loads((root / MARKER_NAME).read_text()).get("study") != study.name:
            return None
        if json.loads((root / "state.json").read_text()).get("state") != "finished":
            return None
        if (root / "study.yaml").read_text() != study.resolved_yaml():
            return None
        records = list(store.records())
        newest = max((store.trials_dir / f"{r['trial_id']}.json").stat().st_mtime for r in records) if records else 0.0
        outputs = [root / "results.parquet"] + ([report_dir / ANSWER_NAME, report_dir / INDEX_NAME] if report_dir else [])
        if any(path.stat().st_mtime < newest for path in outputs):
            return None
        answer = (report_dir / ANSWER_NAME).read_text() if report_dir else None
    except (OSError, ValueError, AttributeError):  # anything missing or unreadable: the full path decides
        return None
    finished = [r for r in records if r.get("status") == "finished"]
    trials = unique_trials(study)
    if pending_trials(trials, {r["trial_id"] for r in finished}):
        return None
    total = len(trials)
    hosts = {str(r.get("node") or "").split(":")[0] for r in finished} - {""}
    return RunSummary(root, total, total, 0, len(finished), 0, report_dir / INDEX_NAME if report_dir else None, len(hosts), answer)
