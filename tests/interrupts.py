"""One Ctrl-C (or SIGTERM) ends the test run, whoever handles the signal on the way.

A test that runs a study hands SIGINT to others: Ray Tune installs its own handler in the
driver (it stops the trials and returns from `fit`, and leaves the handler installed after),
`run_study` turns a KeyboardInterrupt into `StudyInterrupted`, `run` returns exit status 130,
and `ray.init` makes SIGTERM a `sys.exit`, which pytest records as one failed test. Each of them
swallowed the signal and the next test ran. So the run watches the signals themselves: a
wakeup fd (`signal.set_wakeup_fd`) receives the number of every signal that reaches a Python
handler, whichever handler it is, and a test during which SIGINT or SIGTERM arrived is the last
one (`session.shouldstop`); the module and session fixtures' teardowns then end their servers.
Before each test the handlers are put back: SIGINT raises KeyboardInterrupt, and so does SIGTERM
(its default would end pytest at once, before any fixture's `finally`).

Whatever a test started and did not end is ended when pytest exits, however it exits (SIGKILL
included): every process started during the run inherits `SESSION_VARIABLE` (unique per run),
and a reaper kills what still carries it at pytest's death (`tests/processes.py`).

`tests/conftest.py` loads this module's hooks; a pytest run in a subprocess loads it with
`-p tests.interrupts`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SESSION_VARIABLE = "S3L_TEST_RUN"
_pipe: tuple[int, int] | None = None
_reaper: subprocess.Popen | None = None


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")


def _watch() -> None:
    """Our handlers and our wakeup fd, again: a test may have left others in their place."""
    if _pipe is None:
        return
    signal.set_wakeup_fd(_pipe[1], warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)


def stop_signals_seen() -> set[int]:
    """The stop signals that arrived since the last call (each drains the wakeup fd)."""
    seen: set[int] = set()
    while _pipe is not None:
        try:
            data = os.read(_pipe[0], 4096)
        except BlockingIOError:
            break
        if not data:
            break
        seen |= {n for n in data if n in STOP_SIGNALS}
    return seen


def pytest_configure(config: pytest.Config) -> None:
    global _pipe, _reaper
    if _pipe is not None or threading.current_thread() is not threading.main_thread():
        return  # set_wakeup_fd works only in the main thread
    from tests.processes import start_reaper

    # a new value even under an outer run (tests/sweeper/test_interrupts.py): each run reaps its own
    os.environ[SESSION_VARIABLE] = f"{os.getpid()}-{uuid.uuid4().hex}"
    _reaper = start_reaper(f"{SESSION_VARIABLE}={os.environ[SESSION_VARIABLE]}")
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    _pipe = (read, write)
    _watch()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _watch()
    try:
        return (yield)
    finally:
        seen = stop_signals_seen()
        if seen:
            names = " and ".join(signal.Signals(n).name for n in sorted(seen))
            item.session.shouldstop = f"{names} during {item.nodeid}: the run stops here"
