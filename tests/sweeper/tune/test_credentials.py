"""No credential from the driver's environment is written down: not in Ray's temp folder, the
store, the report, nor the output. Ray Tune copies the driver's AWS variables into each trial's
runtime env, which Ray's runtime-env agent logs in plain text (`sweeper/tune/credentials.py`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.sweeper.conftest import write_study
from tests.sweeper.s3_server import clean_env, start_server

SENTINELS = {"AWS_ACCESS_KEY_ID": "SENTINELKEYID5678", "AWS_SECRET_ACCESS_KEY": "SENTINEL-SECRET-1234",
             "AWS_SESSION_TOKEN": "SENTINEL-TOKEN-9876"}


def test_ray_tune_is_kept_from_copying_aws_credentials_into_a_trials_runtime_env(monkeypatch):
    import ray
    from ray.tune.execution.class_cache import _ActorClassCache

    from sweeper.tune.cluster import connect

    for name, value in SENTINELS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # an attached Ray: connect starts nothing
    connect(None)

    class Trainable:
        pass

    env_vars = _ActorClassCache().get(Trainable)._default_options["runtime_env"]["env_vars"]
    assert not set(SENTINELS) & set(env_vars) and not set(SENTINELS.values()) & set(env_vars.values()), env_vars
    assert env_vars.get("PL_DISABLE_FORK") == "1"  # Tune's own variables still travel


@pytest.fixture(scope="module")
def s3():
    yield from start_server()


def files_holding(root: Path, secrets: set[str]) -> list[str]:
    """Every regular file under `root` (followed into no link) that holds one of `secrets`."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            found += [f"{path.relative_to(root)}: {s}" for s in secrets if s.encode() in content]
    return found


@pytest.mark.slow
def test_no_credential_from_the_environment_is_written_to_any_file_of_a_run_on_an_object_store(s3, tmp_path: Path):
    """The tiny study on S3 (moto on 127.0.0.1), credentials in the environment as docs/cluster.md
    says: Ray's temp folder, HOME, TMPDIR, the store, the report and the output hold none of them."""
    work = Path(tempfile.mkdtemp(prefix="s3lsec", dir="/tmp"))  # short: Ray's socket paths are limited to 107 bytes
    try:
        (work / "home").mkdir()
        (work / "tmp").mkdir()
        bucket = s3.new_bucket()
        path = write_study(work, name="secret", grid=[8], storage=f"s3://{bucket}/runs", report=str(work / "reports"))
        env = clean_env({**s3.env, **SENTINELS, "HOME": str(work / "home"), "TMPDIR": str(work / "tmp"), "RAY_TMPDIR": str(work / "tmp")})
        done = subprocess.run([sys.executable, "-m", "sweeper", "run", str(path)], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "study secret: 1 finished, 0 failed" in done.stdout  # the worker reached the store
        assert list(work.glob("tmp/ray/session_*/logs/runtime_env_agent.log")), "Ray's logs are not where this test looks"
        secrets = set(SENTINELS.values())
        leaks = files_holding(work, secrets)
        leaks += [f"s3://{bucket}/{key}" for key in s3.keys(bucket) if any(s.encode() in s3.read(bucket, key) for s in secrets)]
        leaks += [f"output: {s}" for s in secrets if s in done.stdout + done.stderr]
        assert not leaks, leaks
    finally:
        shutil.rmtree(work, ignore_errors=True)
