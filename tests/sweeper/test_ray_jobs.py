"""docs/cluster.md's Ray Jobs recipe on one machine: a `ray start` head and worker on 127.0.0.1
(token authentication, the dashboard's job server on loopback), the study's store in an S3
bucket on a local server (moto), and `ray job submit --working-dir . -- python -m sweeper run
studies/tiny.yaml` from a checkout with no file system shared with the cluster."""

from __future__ import annotations

import io
import json
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.sweeper.conftest import write_study
from tests.sweeper.s3_server import clean_env, start_server
from tests.processes import kill_processes_naming
from tests.sweeper.test_faults import free_ports, node_ports

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3():
    yield from start_server()


@pytest.fixture(scope="module")
def job_cluster(s3):
    """A head (1 CPU, the job server on 127.0.0.1) and a worker (1 CPU), both with the bucket's
    endpoint and credentials in their environment, as pods get them from a Secret."""
    if shutil.which("ray") is None:
        pytest.skip("the `ray` command is not installed")
    # the job server is part of Ray's dashboard, which needs ray[default] (the `jobs` extra)
    pytest.importorskip("aiohttp_cors", reason="`ray job submit` needs Ray's job server: pip install -e '.[jobs]' (ray[default])")
    base = Path(tempfile.mkdtemp(prefix="s3ljob", dir="/tmp"))  # short: Ray's socket paths are limited to 107 bytes
    token = secrets.token_hex(32)
    env = clean_env({**s3.env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "TMPDIR": str(base)})
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    port, dashboard = free_ports(2)
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1"]
    # A temp dir per node, as separate machines have: each node's runtime-env agent unpacks the
    # job's working_dir under <temp-dir>/session_*/runtime_resources/ and, when the job's driver
    # connects, installs it again with overwrite (rmtree, then unzip). With one temp dir the
    # worker's agent deleted the directory that the driver on the head runs in, and the driver
    # failed on a relative path (studies/tiny.yaml, or Tune's os.getcwd()).
    try:
        subprocess.run(["ray", "start", "--head", f"--port={port}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={dashboard}", f"--temp-dir={base / 'head'}", *common, *node_ports()],
                       env=env, check=True, capture_output=True, timeout=180)  # fmt: skip
        subprocess.run(["ray", "start", f"--address=127.0.0.1:{port}", f"--temp-dir={base / 'worker'}", *common, *node_ports()],
                       env=env, check=True, capture_output=True, timeout=180)  # fmt: skip
        yield {"jobs": f"http://127.0.0.1:{dashboard}", "env": env}
    finally:
        kill_processes_naming(base)
        shutil.rmtree(base, ignore_errors=True)


def checkout(directory: Path) -> Path:
    """What `--working-dir .` uploads from a laptop's checkout: the packages, pyproject.toml and studies/."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("sweeper", "s3l_core"):
        shutil.copytree(REPO / package, directory / package, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", directory / "pyproject.toml")
    (directory / "studies").mkdir()
    return directory


def test_ray_job_submit_runs_the_study_on_both_nodes_with_an_object_store(s3, job_cluster, tmp_path: Path):
    bucket = s3.new_bucket()
    work = checkout(tmp_path / "checkout")
    study = write_study(tmp_path, name="jobs", grid=[8, 10, 12, 14], storage=f"s3://{bucket}/runs", report=f"s3://{bucket}/reports")
    (work / "studies" / "tiny.yaml").write_text(study.read_text())
    # the laptop: the job server's address and the cluster's token, nothing else (its AWS variables are not needed)
    laptop = clean_env({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": job_cluster["env"]["RAY_AUTH_TOKEN"]})
    done = subprocess.run(["ray", "job", "submit", "--address", job_cluster["jobs"], "--working-dir", ".", "--",
                           "python", "-m", "sweeper", "run", "studies/tiny.yaml"],
                          cwd=work, env=laptop, capture_output=True, text=True, timeout=900)  # fmt: skip
    logs = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in logs, logs[-4000:]
    # both Ray nodes are on this machine, and the summary counts machines (hosts), not Ray node ids
    assert "study jobs: 4 finished, 0 failed, 0 reused, 4 run now; finished trials ran on 1 node" in logs and f"report:  s3://{bucket}/reports/jobs/index.html" in logs, logs[-4000:]
    results = pd.read_parquet(io.BytesIO(s3.read(bucket, "runs/jobs/results.parquet")))
    assert (results["status"] == "finished").all() and len(results) == 4
    assert results["node"].nunique() == 2, results["node"].tolist()  # trials ran on the head and on the worker
    assert json.loads(s3.read(bucket, "runs/jobs/state.json"))["state"] == "finished"
    assert yaml.safe_load(s3.read(bucket, "runs/jobs/study.yaml"))["storage"] == f"s3://{bucket}/runs"
    assert not (work / "runs").exists() and not (tmp_path / "runs").exists()  # nothing written beside the checkout
