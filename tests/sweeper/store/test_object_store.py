"""A study store on an object store, against a real S3-compatible server on 127.0.0.1 (moto):
records, the lease (refused while live, admitted once expired, one winner of a race), fencing (a
stale lease's writes refused, a trial's round check, a driver that loses its lease stops), bad input
as one line with nothing started; then (slow) the tiny study end to end with `storage: s3://...`,
re-run, driver SIGKILL and resume. Lease expiry is tested with an injected clock, not by waiting.
The paused driver whose lease is taken over, end to end: `test_faults.py`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from sweeper.cli import main
from sweeper.store.lease import BestEffortBackend, Lease, LeaseLost, S3Backend, backend_for, lease_for
from sweeper.store.object_store import ObjectStore, open_store
from sweeper.store.local import StoreError
from tests.processes import dies_with_this_process
from tests.sweeper.conftest import TINY_TRIAL, write_study
from tests.sweeper.s3_server import AWS_VARIABLES, aws_env, clean_env, free_port, start_server


@pytest.fixture(scope="module")
def s3():
    yield from start_server()


@pytest.fixture
def aws(s3, monkeypatch):
    """This process talks to the test server through the standard AWS environment variables."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3


def record(tid: str, status: str = "finished") -> dict:
    from s3l_core.config import TrialConfig

    return {"trial_id": tid, "status": status, "config": TrialConfig().to_dict(), "metrics": {}, "epochs": []}


def test_records_are_objects_written_whole_and_read_back(aws):
    bucket = aws.new_bucket()
    store = open_store(f"s3://{bucket}/runs/study")
    assert isinstance(store, ObjectStore) and store.location == f"s3://{bucket}/runs/study"
    store.write_record(record("aaaaaaaaaaaa"))
    store.write_record(record("bbbbbbbbbbbb", "failed"))
    aws.client().put_object(Bucket=bucket, Key="runs/study/trials/cccccccccccc.json", Body=b'{"trial_id": "cccc')  # damaged
    aws.client().put_object(Bucket=bucket, Key="runs/study/trials/dddddddddddd.json", Body=json.dumps(record("eeeeeeeeeeee")).encode())  # wrong id
    assert [r["trial_id"] for r in store.records()] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert store.finished_ids() == {"aaaaaaaaaaaa"}
    assert json.loads(aws.read(bucket, "runs/study/trials/aaaaaaaaaaaa.json"))["status"] == "finished"
    store.put_json("state.json", {"state": "running", "since": "2026-01-01T00:00:00+00:00"})
    assert store.has("state.json") and not store.has("results.parquet") and store.get_text("nothing") is None
    assert store.state().startswith("not running")  # running, but nobody holds the lease: a killed driver


def test_the_endpoint_can_come_from_the_uri_query_instead_of_the_environment(s3, monkeypatch):
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env(None).items():  # credentials only: no AWS_ENDPOINT_URL
        monkeypatch.setenv(name, value)
    bucket = s3.new_bucket()
    host = s3.endpoint.removeprefix("http://")
    store = open_store(f"s3://{bucket}/runs/q?endpoint_override={host}&scheme=http")
    store.check_writable()
    with store.lock():
        store.write_record(record("aaaaaaaaaaaa"))
        assert ".lease" in "".join(s3.keys(bucket, "runs/q/"))
    assert store.finished_ids() == {"aaaaaaaaaaaa"} and store.location == f"s3://{bucket}/runs/q"
    assert ".lease" not in "".join(s3.keys(bucket, "runs/q/"))  # released at the end


def later(seconds: float):
    """A driver's clock `seconds` ahead: what it sees of a lease once that much time has passed."""
    return lambda: time.time() + seconds


def lease_at(uri: str, ttl: float = 60, clock=time.time) -> Lease:
    store = ObjectStore(uri)
    return Lease(store, backend_for(store), ttl=ttl, clock=clock)


def test_a_second_driver_is_refused_while_the_lease_is_live_and_admitted_once_it_expires(aws):
    """A minute's lease, and a clock two minutes on for "once it expires": no waiting, so no load can make it late."""
    uri = f"s3://{aws.new_bucket()}/runs/leased"
    first = lease_at(uri)
    first.acquire()  # a driver that then dies: nobody renews its lease
    with pytest.raises(StoreError, match=rf"s3://.*/runs/leased is in use by pid {os.getpid()} on .*lease expires in \d+ s"):
        lease_at(uri).acquire()
    assert ObjectStore(uri).is_locked() and lease_at(uri, clock=later(30)).is_live()  # (LastModified: whole seconds)
    assert not lease_at(uri, clock=later(120)).is_live()
    takeover = lease_at(uri, clock=later(120))
    takeover.acquire()  # the expired lease is replaced, one generation on
    assert takeover.generation == 2 and json.loads(aws.read(uri.split("/")[2], "runs/leased/.lease"))["token"] == takeover.token
    with pytest.raises(StoreError, match="is in use by"):
        lease_at(uri).acquire()


def test_a_running_driver_renews_its_lease_past_its_lifetime(aws, monkeypatch):
    monkeypatch.setenv("S3L_LEASE_TTL_S", "2")
    uri = f"s3://{aws.new_bucket()}/runs/renewed"
    with ObjectStore(uri).lock():
        time.sleep(5)  # 2.5 lifetimes
        with pytest.raises(StoreError, match="is in use by"):
            lease_for(ObjectStore(uri)).acquire()
    lease_for(ObjectStore(uri)).acquire()  # released: free at once


def test_of_two_drivers_taking_over_an_expired_lease_exactly_one_wins(aws):
    uri = f"s3://{aws.new_bucket()}/runs/race"
    lease_at(uri, ttl=2).acquire()
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def contend():
        lease = lease_at(uri, ttl=60, clock=later(30))  # the 2 s lease has expired; the winner's 60 s one has not
        start.wait()
        try:
            lease.acquire()
            outcomes.append("won")
        except StoreError:
            outcomes.append("refused")

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"]


def test_the_best_effort_lease_refuses_a_live_lease_and_takes_an_expired_one(aws, monkeypatch):
    """What a store without conditional writes gets (docs/cluster.md)."""
    # 4 s, not 2: the lease's age comes from the object's Last-Modified (whole seconds, so up to
    # 1 s old at once) and taking it waits BEST_EFFORT_SETTLE_S (1 s); a 2 s lease could be
    # over by the second attempt.
    monkeypatch.setenv("S3L_LEASE_TTL_S", "4")
    store = ObjectStore(f"s3://{aws.new_bucket()}/runs/plain")
    Lease(store, BestEffortBackend(store)).acquire()
    with pytest.raises(StoreError, match="is in use by"):
        Lease(store, BestEffortBackend(store)).acquire()
    time.sleep(4.5)
    Lease(store, BestEffortBackend(store)).acquire()


# ------------------------------------------------------------------------- fencing: a driver whose lease was taken writes nothing


def take_over(uri: str) -> Lease:
    """Another driver takes the lease, as it may once this one was paused past it (its clock says it expired)."""
    taker = lease_at(uri, clock=later(120))
    taker.acquire()
    return taker


def test_a_stale_leases_writes_are_refused_and_the_new_holders_records_carry_its_token(aws):
    bucket = aws.new_bucket()
    uri = f"s3://{bucket}/runs/fenced"
    store = ObjectStore(uri)
    with store.lock() as lease:  # the driver
        trial = ObjectStore(uri, fence=lease.fence)  # one of its trials, as a worker opens the store
        trial.write_record(record("aaaaaaaaaaaa"))
        assert json.loads(aws.read(bucket, "runs/fenced/trials/aaaaaaaaaaaa.json"))["lease"]["token"] == lease.token
        import ray.cloudpickle

        assert ray.cloudpickle.loads(ray.cloudpickle.dumps(store)).fence == lease.fence  # Ray pickles the driver's callbacks
        before = aws.keys(bucket)
        taker = take_over(uri)
        writes = {"a trial's record": lambda: trial.write_record(record("aaaaaaaaaaaa", "failed")),
                  "a new record": lambda: trial.write_record(record("bbbbbbbbbbbb")),
                  "the driver's state": lambda: store.put_json("state.json", {"state": "finished"}),
                  "a table": lambda: store.put("results.csv", "trial_id\n"), "a write check": lambda: store.check_writable()}  # fmt: skip
        for what, write in writes.items():
            with pytest.raises(LeaseLost, match=rf"the lease on {uri} was taken by pid {os.getpid()} on .* \(lease generation 2\)$"):
                write()
            assert aws.keys(bucket) == {**before, "runs/fenced/.lease": aws.keys(bucket)["runs/fenced/.lease"]}, what
        assert lease.lost is not None and "lease generation 2" in lease.lost  # the driver's own store told its lease
    assert json.loads(aws.read(bucket, "runs/fenced/.lease"))["token"] == taker.token  # not released: it is not this driver's
    new = ObjectStore(uri, fence=taker.fence)
    new.write_record(record("aaaaaaaaaaaa", "failed"))
    assert json.loads(aws.read(bucket, "runs/fenced/trials/aaaaaaaaaaaa.json"))["lease"] == {"token": taker.token, "holder": taker.holder,
                                                                                              "generation": 2}  # fmt: skip


def test_a_write_delayed_past_a_takeover_does_not_replace_what_the_new_holder_wrote(aws):
    """The check passes, then the writer stalls (a paused driver) while another driver takes the lease
    and writes the same record: the conditional PUT refuses the stale write."""
    bucket = aws.new_bucket()
    uri = f"s3://{bucket}/runs/delayed"
    with ObjectStore(uri).lock() as lease:
        trial = ObjectStore(uri, fence=lease.fence)
        fencing = trial._fencing_now()
        checked = fencing.check
        stalled: list[Lease] = []

        def check_then_stall() -> None:
            checked()
            if not stalled:  # the stale writer is paused here, past its lease
                stalled.append(take_over(uri))
                ObjectStore(uri, fence=stalled[0].fence).write_record(record("aaaaaaaaaaaa"))

        fencing.check = check_then_stall
        with pytest.raises(LeaseLost, match="lease generation 2"):
            trial.write_record(record("aaaaaaaaaaaa", "failed"))
    kept = json.loads(aws.read(bucket, "runs/delayed/trials/aaaaaaaaaaaa.json"))
    assert kept["status"] == "finished" and kept["lease"]["token"] == stalled[0].token


def fake_epoch(epoch: int):
    from s3l_core.trainer import EpochRecord

    return EpochRecord(epoch=epoch, step=epoch, resolution=8, loss=1.0, lr=0.1, knn_val_top1=0.5, train_pflops_cum=0.1 * epoch,
                       wall_s_cum=1.0 * epoch, img_per_s=1.0)  # fmt: skip


def test_a_trials_round_check_stops_it_without_a_record_once_another_driver_holds_the_lease(aws, tmp_path: Path, monkeypatch):
    """The trainable with the trainer and Ray's reporting faked: the round after the takeover is not
    reported, training goes no further, no record is written and the trial ends without raising
    (a retry would meet the same lease)."""
    import sweeper.tune.trainable as trainable
    from sweeper.tune.runner import _context
    from sweeper.study.load import load_study

    bucket = aws.new_bucket()
    study = load_study(write_study(tmp_path, name="rounds", grid=[8], storage=f"s3://{bucket}/runs"))
    uri = f"s3://{bucket}/runs/rounds"
    reports: list[dict] = []
    rounds: list[int] = []

    def fake_train(config, on_epoch, resume_from, checkpoint_dir):
        for epoch in (1, 2, 3):
            if epoch == 2:
                take_over(uri)  # while this driver is paused, its workers train on
            rounds.append(epoch)
            on_epoch(fake_epoch(epoch), None)
        raise AssertionError("trained past the round that found the lease taken")

    monkeypatch.setattr(trainable, "train", fake_train)
    monkeypatch.setattr(trainable, "_this_node", lambda: "test-node")
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(trainable.tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    with ObjectStore(uri).lock() as lease:
        context = _context(study, uri, lease.fence)
        trainable.run_trial({"point": {"resolution": 8, "seed": 0}}, context)
    assert rounds == [1, 2] and [r.get("epoch") for r in reports] == [1, None]
    assert "lease generation 2" in reports[-1][trainable.LEASE_LOST_KEY]
    assert not aws.keys(bucket, "runs/rounds/trials/")


def test_a_driver_whose_lease_is_taken_stops_its_run_exits_2_in_one_line_and_writes_nothing_more(aws, tmp_path: Path, monkeypatch, capsys):
    """run with Ray's Tuner faked: another driver takes the lease mid-run; the driver's renewal is
    refused, its stopper ends the run, and `run` exits 2 naming the new holder, with no state,
    tables or report written after the loss."""
    import ray
    import ray.cloudpickle

    import sweeper.tune.runner as runner

    monkeypatch.setenv("S3L_LEASE_TTL_S", "2")  # a renewal every half second
    bucket = aws.new_bucket()
    path = write_study(tmp_path, name="lost", grid=[8], storage=f"s3://{bucket}/runs", report=f"s3://{bucket}/reports")
    uri = f"s3://{bucket}/runs/lost"
    seen: dict[str, object] = {}

    class FakeTuner:
        def __init__(self, lease):
            self.stopper = runner.LeaseStopper(lease)

        def fit(self) -> None:
            assert ray.cloudpickle.loads(ray.cloudpickle.dumps(self.stopper)).stop_all() is False  # Ray pickles it into tuner.pkl
            seen["before"] = aws.keys(bucket)
            while True:  # the renewer may replace the lease between our read and our write: try again
                try:
                    seen["taker"] = take_over(uri)
                    break
                except StoreError:
                    time.sleep(0.1)
            deadline = time.monotonic() + 120
            while not self.stopper.stop_all() and time.monotonic() < deadline:
                time.sleep(0.1)
            seen["stopped"] = self.stopper.stop_all()  # (an error raised here would itself end the run)

    monkeypatch.setattr(runner, "connect", lambda address: None)
    monkeypatch.setattr(runner, "check_capacity", lambda study: None)
    monkeypatch.setattr(runner.ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(runner, "make_eta", lambda *args, **kwargs: None)
    monkeypatch.setattr(runner, "_tuner", lambda *args, lease=None, **kwargs: FakeTuner(lease))
    assert main(["run", str(path)]) == 2
    assert seen["stopped"], "the stopper never stopped the run"
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    taker = seen["taker"]
    assert len(err) == 1 and err[0].startswith(f"error: the lease on {uri} was taken by {taker.holder} (lease generation 2); "
                                               "this driver stopped: its trials were stopped"), err  # fmt: skip
    after = aws.keys(bucket)
    assert {k: v for k, v in after.items() if k != "runs/lost/.lease"} == {k: v for k, v in seen["before"].items() if k != "runs/lost/.lease"}
    assert json.loads(aws.read(bucket, "runs/lost/state.json"))["state"] == "running"  # as before the loss; no tables, no report
    assert json.loads(aws.read(bucket, "runs/lost/.lease"))["token"] == taker.token


# ------------------------------------------------------------------------- bad input: one line, nothing started


def test_an_s3_store_without_boto3_is_refused_rather_than_left_with_a_best_effort_lease(aws, monkeypatch):
    store = ObjectStore(f"s3://{aws.new_bucket()}/runs/x")
    monkeypatch.setitem(sys.modules, "boto3", None)  # `import boto3` raises ImportError
    with pytest.raises(StoreError, match=r"needs boto3 for its lease .*pip install 's3l-sweep\[s3\]'"):
        with store.lock():
            pass


def test_only_a_missing_boto3_or_botocore_is_reported_as_needing_boto3(aws, monkeypatch):
    store = ObjectStore(f"s3://{aws.new_bucket()}/runs/x")
    monkeypatch.setitem(sys.modules, "botocore.config", None)
    with pytest.raises(StoreError, match="needs boto3"):
        lease_for(store)
    monkeypatch.delitem(sys.modules, "botocore.config")

    def broken(self, store):
        raise ImportError("cannot import name 'ssl_wrap' from 'urllib3.util'", name="urllib3.util")

    monkeypatch.setattr(S3Backend, "__init__", broken)
    with pytest.raises(ImportError, match="cannot import name 'ssl_wrap' from 'urllib3.util'"):  # what it is, not "needs boto3"
        lease_for(store)


@pytest.mark.parametrize("problem", ["missing bucket", "unreachable endpoint", "no credentials"])
def test_a_bad_object_store_is_one_line_exit_2_and_starts_nothing(s3, tmp_path: Path, monkeypatch, capsys, ray_start_spy, problem: str):
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    endpoint = f"http://127.0.0.1:{free_port()}" if problem == "unreachable endpoint" else s3.endpoint
    for name, value in aws_env(endpoint, credentials=problem != "no credentials").items():
        monkeypatch.setenv(name, value)
    bucket = "s3l-not-there" if problem == "missing bucket" else s3.new_bucket()
    path = write_study(tmp_path, name="bad", grid=[8], storage=f"s3://{bucket}/runs", report=f"s3://{bucket}/reports")
    assert main(["run", str(path)]) == 2  # a hang (retrying an unreachable endpoint for ever) meets the suite's timeout
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    expected = {"missing bucket": "bucket 's3l-not-there'", "unreachable endpoint": f"cannot reach the object store of s3://{bucket}/runs/bad at {endpoint}",
                "no credentials": "no credentials for"}[problem]  # fmt: skip
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert ray_start_spy == [] and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


SECRET = "wJalrSECRETbPxRfiCY"


def test_credentials_in_a_uri_are_refused_in_one_line_that_does_not_echo_them(tmp_path: Path, capsys, ray_start_spy):
    """pyarrow would take `s3://KEY:SECRET@bucket`, but the URI is written into the store's
    study.yaml, the report and every message naming the store: refused, wherever it comes from."""
    uri = f"s3://AKIAEXAMPLE:{SECRET}@bucket/runs?endpoint_override=127.0.0.1:{free_port()}&scheme=http"  # nothing beyond loopback, even if accepted
    for source in ("storage", "report", "--storage", "report --out"):
        top = {"storage": uri} if source == "storage" else {"report": uri} if source == "report" else {}
        path = write_study(tmp_path, name="creds", grid=[8], **top)
        args = {"--storage": ["run", str(path), "--storage", uri], "report --out": ["report", str(path), "--out", uri]}.get(source, ["run", str(path)])
        if source == "report --out":
            (tmp_path / "runs" / "creds").mkdir(parents=True, exist_ok=True)
            (tmp_path / "runs" / "creds" / "study.yaml").write_text(path.read_text())  # a store to report on
        assert main(args) == 2, source
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "the URI carries credentials" in lines[0] and "s3://bucket/runs" in lines[0], (source, err)
        assert SECRET not in err and "AKIAEXAMPLE" not in err, source
    assert ray_start_spy == []


# ------------------------------------------------------------------------- the tiny study, end to end (slow)


def run_cli(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeper", *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_tiny_study_runs_on_an_object_store_and_a_rerun_reuses_every_trial(s3, tmp_path: Path):
    bucket = s3.new_bucket()
    path = write_study(tmp_path, name="tiny", storage=f"s3://{bucket}/runs", report=f"s3://{bucket}/reports")
    env = clean_env(s3.env)
    started = time.monotonic()
    done = run_cli(["run", str(path)], env)
    first_s = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"results: s3://{bucket}/runs/tiny/results.parquet" in done.stdout and f"report:  s3://{bucket}/reports/tiny/index.html" in done.stdout
    assert "Best configuration: " in done.stdout  # the answer, read from the report before its upload
    keys = s3.keys(bucket)
    records = {k: v for k, v in keys.items() if k.startswith("runs/tiny/trials/")}
    assert len(records) == 2
    assert {"runs/tiny/study.yaml", "runs/tiny/state.json", "runs/tiny/results.parquet", "runs/tiny/epochs.parquet", "reports/tiny/index.html", "reports/tiny/summary.txt"} <= set(keys)
    assert any(k.startswith("runs/tiny/ray/attempt-") and k.endswith("/encoder.pt") for k in keys)  # Ray's storage_path on the same URI
    assert not any(k.endswith("/checkpoint.pt") for k in keys)  # keep: encoder, once each record is written
    assert "runs/tiny/.lease" not in keys  # released
    assert json.loads(s3.read(bucket, "runs/tiny/state.json"))["state"] == "finished"
    import io

    results = pd.read_parquet(io.BytesIO(s3.read(bucket, "runs/tiny/results.parquet")))
    assert (results["status"] == "finished").all() and len(results) == 2
    assert "tiny: S3L report" in s3.read(bucket, "reports/tiny/index.html").decode()

    started = time.monotonic()
    again = run_cli(["run", str(path), "--no-report"], env)
    rerun_s = time.monotonic() - started
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 trials, 2 already finished (reused), 0 to run" in again.stdout
    assert {k: v for k, v in s3.keys(bucket, "runs/tiny/trials/").items()} == records  # no record written again
    status = run_cli(["status", f"s3://{bucket}/runs/tiny"], env)
    assert status.returncode == 0 and "state finished, 2 of 2 planned trials finished" in status.stdout, status.stderr
    print(f"object store: first run {first_s:.1f} s, rerun {rerun_s:.1f} s")


@pytest.mark.slow
def test_driver_sigkill_on_an_object_store_then_run_again_loses_and_repeats_nothing(aws, tmp_path: Path):
    """A killed driver's lease refuses a second driver until it expires; the run after it reuses
    every finished trial and continues the interrupted one from its checkpoint in the bucket."""
    bucket = aws.new_bucket()
    grid = [8, 10, 12, 14, 16]
    path = write_study(tmp_path, name="driver", grid=grid, trial={**TINY_TRIAL, "epochs": 10}, max_concurrent=1,
                       storage=f"s3://{bucket}/runs")  # fmt: skip
    ttl = 20
    env = clean_env({**aws.env, "PYTHONUNBUFFERED": "1", "S3L_LEASE_TTL_S": str(ttl)})
    prefix = "runs/driver/"

    def finished() -> set[str]:
        return {k.rsplit("/", 1)[1][:-5] for k in aws.keys(bucket, prefix + "trials/")}

    def in_flight_checkpointed() -> set[str]:
        """Unfinished trials with a checkpoint of one of their first 4 epochs (so several epochs are left to lose)."""
        keys = [k.split("/") for k in aws.keys(bucket, prefix + "ray/") if k.endswith("/checkpoint.pt")]
        return {k[4] for k in keys if int(k[5].removeprefix("checkpoint_")) < 4} - finished()

    driver = subprocess.Popen(dies_with_this_process([sys.executable, "-m", "sweeper", "run", str(path), "--no-report"]), env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not finished():
            time.sleep(0.3)
        second = run_cli(["run", str(path), "--no-report"], env, timeout=120)  # while the first driver runs
        first_still_running = driver.poll() is None
        while time.monotonic() < deadline and not in_flight_checkpointed():
            time.sleep(0.3)
        interrupted = in_flight_checkpointed()
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the embedded Ray it started
        driver.wait()
    killed_at = time.monotonic()
    time.sleep(3)  # a worker of the killed driver's Ray may take a moment to notice
    assert first_still_running, "the first driver finished before the second one was tried"
    assert second.returncode == 2 and f"is in use by pid {driver.pid}" in second.stderr, second.stderr[-2000:]
    before = aws.keys(bucket, prefix + "trials/")
    assert 1 <= len(before) < len(grid), "the driver must die with the study unfinished"
    interrupted -= finished()
    assert interrupted, "no unfinished trial had a checkpoint when the driver was killed"
    assert time.monotonic() - killed_at < ttl - 2
    with pytest.raises(StoreError, match=f"is in use by pid {driver.pid} on "):  # the dead driver's lease, not yet expired
        lease_for(ObjectStore(f"s3://{bucket}/runs/driver")).acquire()
    time.sleep(max(0.0, ttl + 1 - (time.monotonic() - killed_at)))
    done = run_cli(["run", str(path), "--no-report"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(grid)} trials, {len(before)} already finished (reused), {len(grid) - len(before)} to run" in done.stdout
    after = aws.keys(bucket, prefix + "trials/")
    assert {k: after[k] for k in before} == before  # no finished trial was trained again
    import io

    results = pd.read_parquet(io.BytesIO(aws.read(bucket, prefix + "results.parquet")))
    assert sorted(results["status"]) == ["finished"] * len(grid) and results["trial_id"].is_unique
    resumed = {tid: json.loads(aws.read(bucket, f"{prefix}trials/{tid}.json"))["metrics"]["resumed_from_epoch"] for tid in interrupted}
    assert all(epoch >= 1 for epoch in resumed.values()), f"an interrupted trial restarted from scratch: {resumed}"
