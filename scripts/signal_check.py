"""By hand (starts Ray, about a minute): one signal to a pytest that runs real studies in-process.

Runs two study tests of tests/sweeper/test_run.py (with the `local_ray` fixture), sends the
signal once a trial's actor runs, and prints how pytest ended and which of the processes it had
then are still alive 5 s after it exited (docs/testing.md, "Signals and leftover processes").

    python scripts/signal_check.py SIGINT     # or SIGTERM, SIGKILL
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
TESTS = ["tests/sweeper/test_run.py::test_tiny_study_end_to_end_then_extension_runs_only_new_points",
         "tests/sweeper/test_run.py::test_optuna_nsga2_study_runs_and_continues_without_rerunning"]
TRIAL_ACTORS = ("ImplicitFunc", "run_trial", "_Inner")


def command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:90]
    except psutil.Error:
        return ""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main() -> int:
    sig = getattr(signal, sys.argv[1]) if len(sys.argv) > 1 else signal.SIGINT
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    pytest = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        start = time.monotonic()
        while not any(a in command_line(k) for k in psutil.Process(pytest.pid).children(recursive=True) for a in TRIAL_ACTORS):
            if pytest.poll() is not None or time.monotonic() - start > 600:
                print("no trial seen", pytest.poll(), pytest.stdout.read()[-3000:])
                return 1
            time.sleep(0.5)
        time.sleep(3)
        before = {k.pid: command_line(k) for k in psutil.Process(pytest.pid).children(recursive=True)}
        print(f"trial running after {time.monotonic() - start:.0f} s; {len(before)} descendants; sending {sig.name} once")
        sent = time.monotonic()
        pytest.send_signal(sig)
        try:
            out, _ = pytest.communicate(timeout=180)
            print(f"pytest exited {pytest.returncode} {time.monotonic() - sent:.0f} s after the signal")
        except subprocess.TimeoutExpired:
            print("pytest still running 180 s after one signal")
            pytest.kill()
            out, _ = pytest.communicate()
        print("\n".join(out.strip().splitlines()[-12:]))
        time.sleep(5)
        left = [f"{pid} {c}" for pid, c in before.items() if alive(pid)]
        print(f"left of its {len(before)} descendants 5 s later: {len(left)}", *left, sep="\n")
        return 0
    finally:
        if pytest.poll() is None:
            pytest.kill()


if __name__ == "__main__":
    sys.exit(main())
