"""One Ctrl-C ends the suite, and nothing a test started outlives it (tests/interrupts.py,
tests/processes.py): a small pytest run in a subprocess, with a moto server fixture, is sent a
signal while a test runs; it must exit without running the next test, and the server must be gone.
No Ray is started: the handlers that swallowed the signal in a study (Ray Tune's, `run_study`'s
KeyboardInterrupt -> StudyInterrupted, `ray.init`'s SIGTERM -> sys.exit) are played by the tests."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.processes import dies_with_this_process, kill_processes_naming

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 120  # generous: only a broken run waits this long
GONE_S = 30  # for a process to die once its parent has (milliseconds when nothing is broken)

CONFTEST = """
import os
from pathlib import Path
import pytest
from tests.sweeper.s3_server import start_server

@pytest.fixture(scope="module")
def s3():
    try:
        yield from start_server()
    finally:
        Path(os.environ["TORN_DOWN"]).write_text("yes")
"""

# How the test that is running when the signal comes takes it.
BODIES = {
    # pytest's own handling: KeyboardInterrupt
    "plain": "ready(); time.sleep(300)",
    # Ray Tune: a handler of its own that stops the run and returns as if done
    "swallowed_like_tune": "got = threading.Event(); signal.signal(signal.SIGINT, lambda *_: got.set()); ready(); got.wait(300)",
    # run_study: the KeyboardInterrupt becomes an ordinary exception, a failed test
    "converted_like_run_study": "try:\n        ready(); time.sleep(300)\n    except KeyboardInterrupt:\n        raise RuntimeError('study interrupted') from None",
    # ray.init's driver: SIGTERM -> sys.exit, which pytest records as one failed test
    "sigterm_as_exit_like_ray": "signal.signal(signal.SIGTERM, lambda s, _: sys.exit(s)); ready(); time.sleep(300)",
}

TESTS = """
import os, signal, sys, threading, time
from pathlib import Path

def ready():
    Path(os.environ["READY"]).write_text("ready")

def test_running_when_the_signal_comes(s3):
    {body}  # calls ready() once it takes signals as it means to

def test_after():
    Path(os.environ["AFTER"]).write_text("ran")
"""


def _inner_run(tmp_path: Path, body: str) -> tuple[subprocess.Popen, Path]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(TESTS.format(body=body))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "READY": str(tmp_path / "ready"), "AFTER": str(tmp_path / "after"),
           "TORN_DOWN": str(tmp_path / "torn_down")}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.interrupts", "test_inner.py"]
    inner = subprocess.Popen(dies_with_this_process(command), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)  # fmt: skip
    return inner, tmp_path / "after"


def _wait_ready(inner: subprocess.Popen, tmp_path: Path) -> psutil.Process:
    """Wait until the first test runs; return its moto server."""
    deadline = time.monotonic() + WAIT_S
    while not (tmp_path / "ready").exists():
        assert inner.poll() is None, inner.stdout.read()
        assert time.monotonic() < deadline, "the inner test never started"
        time.sleep(0.1)
    servers = [p for p in psutil.Process(inner.pid).children(recursive=True) if "moto.server" in " ".join(p.cmdline())]
    assert len(servers) == 1
    return servers[0]


def _gone(process: psutil.Process) -> bool:
    _, alive = psutil.wait_procs([process], timeout=GONE_S)
    return not alive


@dataclasses.dataclass
class Started:
    """What a test started: on a failure, what outlived the inner run is ended too."""

    runs: list[subprocess.Popen] = dataclasses.field(default_factory=list)
    processes: list[psutil.Process] = dataclasses.field(default_factory=list)
    markers: list[str] = dataclasses.field(default_factory=list)


@pytest.fixture
def started():
    found = Started()
    yield found
    for inner in found.runs:
        if inner.poll() is None:
            inner.kill()
        inner.wait()
    for process in found.processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    for marker in found.markers:
        kill_processes_naming(marker)


@pytest.mark.parametrize("how, signum", [("plain", signal.SIGINT), ("swallowed_like_tune", signal.SIGINT),
                                         ("converted_like_run_study", signal.SIGINT), ("plain", signal.SIGTERM),
                                         ("sigterm_as_exit_like_ray", signal.SIGTERM)])  # fmt: skip
def test_one_signal_ends_the_run_and_its_server_whoever_takes_it(tmp_path: Path, started: Started, how: str, signum: int):
    pytest.importorskip("moto.server", reason="needs the test extra's moto[server]")
    inner, after = _inner_run(tmp_path, BODIES[how])
    started.runs.append(inner)
    server = _wait_ready(inner, tmp_path)
    started.processes.append(server)
    inner.send_signal(signum)
    out, _ = inner.communicate(timeout=WAIT_S)
    assert inner.returncode not in (0, None), out
    assert not after.exists(), f"the next test ran after one {signal.Signals(signum).name}:\n{out}"
    assert (tmp_path / "torn_down").exists(), f"the server fixture's teardown did not run:\n{out}"
    assert _gone(server), "the moto server outlived the run"


def test_a_sigkilled_run_leaves_no_server_and_no_detached_process(tmp_path: Path, started: Started):
    """No `finally` runs after SIGKILL: the server dies with pytest (PR_SET_PDEATHSIG), and a detached
    process (as `ray start` leaves its nodes, as Ray's agents outlive the raylet) by the run's reaper."""
    pytest.importorskip("moto.server", reason="needs the test extra's moto[server]")
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signals are Linux's")
    marker = f"s3l-detached-{os.getpid()}-{tmp_path.name}"
    # detached as `ray start` leaves its nodes: its parent exits at once, so only its environment ties it to the run
    sleeper = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', {marker!r}])"
    body = (f"subprocess.run([sys.executable, '-c', {sleeper!r}], start_new_session=True, check=True)\n"
            f"    time.sleep(0.5); ready(); time.sleep(300)")
    inner, _ = _inner_run(tmp_path, "import subprocess\n    " + body)
    started.runs.append(inner)
    started.markers.append(marker)
    server = _wait_ready(inner, tmp_path)
    started.processes.append(server)
    detached = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or []) and "sleep" in " ".join(p.info["cmdline"])]
    assert len(detached) == 1 and detached[0].ppid() != inner.pid  # not pytest's child
    inner.kill()
    inner.wait()
    assert _gone(server), "the moto server outlived a SIGKILLed pytest"
    assert _gone(detached[0]), "a detached process outlived a SIGKILLed pytest"
