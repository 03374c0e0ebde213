"""A study on a 2-node Ray cluster (both nodes on 127.0.0.1): placement and a lost node."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tests.sweeper.conftest import write_study

pytestmark = pytest.mark.slow

# Runs in its own process so its cluster never meets the session's embedded Ray.
CLUSTER_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    from pathlib import Path
    from sweeper.tune.loopback import pin_ray_to_loopback
    pin_ray_to_loopback()  # before any node starts: every process of this cluster on 127.0.0.1
    from ray.cluster_utils import Cluster
    import ray
    from sweeper.tune.runner import run_study
    from sweeper.study.load import load_study

    study_path, remove_node = sys.argv[1], sys.argv[2] == "remove"
    args = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=args)
    worker = cluster.add_node(**args)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    study = load_study(study_path)
    removed = []
    if remove_node:
        def remove_when_busy():
            # Both trials (one per 1-CPU node) past their first checkpoint and neither finished:
            # the worker node is surely mid-trial, whichever node started first.
            store = Path(study.storage) / study.name
            def both_mid_trial():
                checkpointed = {p.parent for p in (store / "ray").glob("*/*/checkpoint_*")}
                return len(checkpointed) >= 2 and not list((store / "trials").glob("*.json"))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not both_mid_trial():
                time.sleep(0.05)
            cluster.remove_node(worker, allow_graceful=False)
            removed.append(time.monotonic())
        threading.Thread(target=remove_when_busy, daemon=True).start()
    summary = run_study(study, report=False)
    print("RESULT " + json.dumps({"finished": summary.finished, "failed": summary.failed, "removed": bool(removed)}))
    ray.shutdown()
    cluster.shutdown()
    """
)


def run_on_cluster(tmp_path: Path, name: str, mode: str, **study) -> tuple[dict, pd.DataFrame]:
    path = write_study(tmp_path, name=name, **study)
    done = subprocess.run([sys.executable, "-c", CLUSTER_SCRIPT, str(path), mode], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    return summary, pd.read_parquet(tmp_path / "runs" / name / "results.parquet")


def test_trials_land_on_both_nodes(tmp_path: Path):
    summary, results = run_on_cluster(tmp_path, "two_nodes", "keep", grid=[8, 10, 12, 14])
    assert summary == {"finished": 4, "failed": 0, "removed": False}
    assert results["node"].nunique() == 2


def test_trials_of_a_removed_node_are_rescheduled_and_finish(tmp_path: Path):
    trial = {**__import__("tests.sweeper.conftest", fromlist=["TINY_TRIAL"]).TINY_TRIAL, "epochs": 4}
    summary, results = run_on_cluster(tmp_path, "lost_node", "remove", grid=[8, 10], trial=trial, failure={"max_retries": 3})
    assert summary["removed"] and summary["finished"] == 2 and summary["failed"] == 0
    assert (results["status"] == "finished").all() and results["node"].nunique() == 1
