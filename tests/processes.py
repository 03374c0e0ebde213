"""Processes a test starts end with the test run, however the run ends, SIGKILL included.

A fixture's `finally` ends its processes when pytest ends normally, on Ctrl-C or on SIGTERM
(`tests/interrupts.py`); after a SIGKILL no `finally` runs, so on Linux each child also asks the
kernel for a signal when pytest dies (`prctl(PR_SET_PDEATHSIG)`). The request is made in the
child by a shim that then execs the real command (a `preexec_fn` could deadlock: a driver with
Ray's threads forks here). `ray start` daemonises its nodes away from pytest, so a cluster gets a
reaper instead: a child that waits for pytest's death and then kills the cluster's processes.
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

# argv: parent pid, marker. At the parent's death (SIGTERM, asked for through the shim), kill
# every process whose command line names the marker, and their children; never itself.
_REAPER = """
import os, signal, sys, psutil
marker = sys.argv[2]

def reap(*_):
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if p.pid != os.getpid() and marker in " ".join(p.info["cmdline"] or []):
            try:
                found += [p, *p.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    for p in found:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    os._exit(0)

signal.signal(signal.SIGTERM, reap)
if os.getppid() != int(sys.argv[1]):
    reap()
while True:
    signal.pause()
"""


def dies_with_this_process(command: list[str], signum: int = 9) -> list[str]:
    """`command`, run so that Linux sends it `signum` (SIGKILL) when this process dies; unchanged elsewhere."""
    if not LINUX:
        return command
    return [sys.executable, "-c", _SHIM, str(os.getpid()), str(signum), *command]


def start_reaper(marker: str | Path) -> subprocess.Popen:
    """A process that kills everything naming `marker` once this process dies (SIGKILL included).
    End it with `stop_reaper` when the processes it guards are ended."""
    import signal

    command = dies_with_this_process([sys.executable, "-c", _REAPER, str(os.getpid()), str(marker)], signal.SIGTERM)
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_reaper(reaper: subprocess.Popen) -> None:
    reaper.kill()  # not SIGTERM: that would make it reap
    reaper.wait(timeout=30)


def kill_processes_naming(marker: str | Path) -> None:
    """Every process whose command line names `marker` (a cluster's temp dir) and their children; never another Ray."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if str(marker) in " ".join(process.info["cmdline"] or []):
            try:
                found += [process, *process.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    for process in found:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(found, timeout=30)
