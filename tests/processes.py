"""Processes a test starts end with the test run, however the run ends, SIGKILL included.

A fixture's `finally` ends its processes when pytest ends normally, on Ctrl-C or on SIGTERM
(`tests/interrupts.py`); after a SIGKILL no `finally` runs, so on Linux each child also asks the
kernel for a signal when pytest dies (`prctl(PR_SET_PDEATHSIG)`). The request is made in the
child by a shim that then execs the real command (a `preexec_fn` could deadlock: a driver with
Ray's threads forks here). `ray start` daemonises its nodes away from pytest, so a cluster gets a
reaper instead: each test run has one (`tests/interrupts.py`), a child that waits for pytest's
death and then kills whatever still carries the run's marker variable in its environment (every
process started during the run inherits it), Ray's daemons and agents included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

PR_SET_PDEATHSIG = 1
LINUX = sys.platform.startswith("linux")

# argv: parent pid, signal number, command... Asks for the signal at the parent's death, then
# checks the parent is still the one that started it (it may have died before the request).
_SHIM = """
import ctypes, os, sys
parent, signum, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
if ctypes.CDLL(None, use_errno=True).prctl(1, signum, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
if os.getppid() != parent:
    os._exit(1)
os.execvp(command[0], command)
"""

# argv: parent pid, marker. Every 2 s it notes the parent's descendants; at the parent's death
# (SIGTERM, asked for through the shim) it kills those still alive, every process whose command
# line or environment holds the marker, and their children; never itself. Noted, because Ray's
# agents are started with an environment of their own and renamed (`ray::DashboardAgent`), and
# their raylet dies with pytest at the same instant (Ray's own parent-death signal), so by then
# nothing links them to the run any more.
_REAPER = """
import os, signal, sys, time, psutil
parent, marker = int(sys.argv[1]), sys.argv[2]
noted = {}

def marked(p):
    try:
        return marker in " ".join(p.cmdline()) or any(marker in f"{k}={v}" for k, v in p.environ().items())
    except psutil.Error:
        return False

def note():
    try:
        for p in psutil.Process(parent).children(recursive=True):
            noted[(p.pid, p.create_time())] = p
    except psutil.Error:
        pass

def reap(*_):
    found = [p for p in psutil.process_iter() if p.pid != os.getpid() and marked(p)]
    found += [p for p in noted.values() if p.pid != os.getpid() and p.is_running()]  # is_running: not a reused pid
    for p in list(found):
        try:
            found += p.children(recursive=True)
        except psutil.Error:
            pass
    for p in found:
        try:
            p.kill()
        except psutil.Error:
            pass
    os._exit(0)

signal.signal(signal.SIGTERM, reap)
while os.getppid() == parent:  # also where the parent-death signal is not to be had
    note()
    time.sleep(2)
reap()
"""


def dies_with_this_process(command: list[str], signum: int = 9) -> list[str]:
    """`command`, run so that Linux sends it `signum` (SIGKILL) when this process dies; unchanged elsewhere."""
    if not LINUX:
        return command
    return [sys.executable, "-c", _SHIM, str(os.getpid()), str(signum), *command]


def start_reaper(marker: str | Path) -> subprocess.Popen:
    """A process that kills everything naming `marker` once this process dies (SIGKILL included).
    It lives as long as this process (`tests/interrupts.py` starts one per test run)."""
    import signal

    command = dies_with_this_process([sys.executable, "-c", _REAPER, str(os.getpid()), str(marker)], signal.SIGTERM)
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _marked(process: psutil.Process, marker: str) -> bool:
    try:
        return marker in " ".join(process.cmdline()) or any(marker in f"{k}={v}" for k, v in process.environ().items())
    except psutil.Error:
        return False


def kill_processes_naming(marker: str | Path) -> None:
    """Every process whose command line or environment names `marker` (a cluster's temp dir, which
    its nodes have as TMPDIR) and their children; never this process, never another Ray."""
    found = [p for p in psutil.process_iter() if p.pid != os.getpid() and _marked(p, str(marker))]
    for process in list(found):
        try:
            found += process.children(recursive=True)
        except psutil.Error:
            pass
    for process in found:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(found, timeout=30)
