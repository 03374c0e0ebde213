"""Start-up time of the command line: `--help`, `--version` and `validate` (issue 12: under 1 s).

    python -m bench startup [--repeat 7] [--json PATH]

Each command runs as a fresh subprocess `--repeat` times, from the project root; the table
gives the median, fastest and slowest wall time, with a bare `python -c pass` for the
interpreter's own start-up. `s3l-sweep` is timed when the console script is on PATH.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from bench.common import ROOT, machine, print_table, write_json

TARGET_S = 1.0
STUDIES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "studies").glob("*.yaml"))


def commands() -> list[tuple[str, list[str]]]:
    py = [sys.executable]
    out = [
        ("python -c pass (interpreter alone)", [*py, "-c", "pass"]),
        ("python -m sweeper --help", [*py, "-m", "sweeper", "--help"]),
        ("python -m sweeper --version", [*py, "-m", "sweeper", "--version"]),
        ("python -m sweeper validate studies/quickstart.yaml", [*py, "-m", "sweeper", "validate", "studies/quickstart.yaml"]),
        (f"python -m sweeper validate studies/*.yaml ({len(STUDIES)} files)", [*py, "-m", "sweeper", "validate", *STUDIES]),
    ]
    console = shutil.which("s3l-sweep")
    if console:
        out.insert(2, ("s3l-sweep --help", [console, "--help"]))
    return out


def time_command(argv: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench startup", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    print(f"machine: {machine('cpu')}", flush=True)
    rows = []
    for label, command in commands():
        times = time_command(command, args.repeat)
        median = statistics.median(times)
        target = "-" if "interpreter" in label else ("met" if median < TARGET_S else "MISSED")
        rows.append({"command": label, "median s": median, "fastest s": min(times), "slowest s": max(times), f"< {TARGET_S:g} s": target})
    print_table(rows, ["command", "median s", "fastest s", "slowest s", f"< {TARGET_S:g} s"], title=f"CLI start-up, {args.repeat} runs each")
    write_json(args.json, {"machine": machine("cpu"), "rows": rows})
    return 0 if all(r[f"< {TARGET_S:g} s"] != "MISSED" for r in rows) else 1
