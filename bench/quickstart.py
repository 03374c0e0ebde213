"""Wall time of the quickstart study, run as a user runs it.

    python -m bench quickstart [--study studies/quickstart.yaml] [--json PATH] [--keep DIR]

Runs `python -m sweeper run <study> --storage <dir>/runs` as a subprocess from a temporary
working directory, or from DIR with --keep (so the study's relative `report: reports/` lands
there too, and with --keep the store and report stay for a look or screenshots), Ray
start-up, every trial and the HTML report included. Target (issue 5): under 10 minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import ROOT, machine, print_table, write_json

TARGET_S = 600.0


@contextmanager
def _working_dir(keep: Path | None) -> Iterator[str]:
    """`keep` made and left in place, else a temporary folder removed afterwards."""
    if keep is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield tmp
    else:
        keep.mkdir(parents=True, exist_ok=True)
        yield str(keep.resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench quickstart", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "quickstart.yaml")
    parser.add_argument("--json")
    parser.add_argument("--keep", type=Path, help="run in this new (or empty) folder and leave the store and report there")
    args = parser.parse_args(argv)
    study = args.study.resolve()
    where = machine("cpu")
    print(f"machine: {where}", flush=True)
    import yaml

    spec = yaml.safe_load(study.read_text())
    print(f"study {spec.get('name')}: trial {spec.get('trial')}, space {spec.get('space')}, seeds {spec.get('seeds')}, max_concurrent {spec.get('max_concurrent')}", flush=True)
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: not empty (a finished store there would be reused, not timed)")
    with _working_dir(args.keep) as tmp:
        command = [sys.executable, "-m", "sweeper", "run", str(study), "--storage", str(Path(tmp) / "runs")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        print("$ " + " ".join(command[1:]).replace(str(ROOT) + "/", ""), flush=True)
        started = time.perf_counter()
        completed = subprocess.run(command, check=False, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        output = (completed.stdout + completed.stderr).splitlines()
        tail = [line for line in output if line.startswith(("study ", "results:", "report:", "error:"))]
        if completed.returncode != 0 or not tail:
            tail = [line for line in output if line.strip()][-15:]
        rows = []
        results = next(Path(tmp, "runs").glob("*/results.parquet"), None)
        if results is not None:
            import pandas as pd

            frame = pd.read_parquet(results)
            for _, r in frame.iterrows():
                rows.append({"trial": r["trial_id"], "status": r["status"], "resolution": r["resolution"], "knn_top1": r["knn_top1"], "pixel floor": r["knn_pixels_top1"], "random floor": r["knn_random_top1"], "linear_top1": r["linear_top1"], "trial wall s": r["wall_s"], "img/s": r["img_per_s"]})
        report = next(Path(tmp).glob("reports/*/index.html"), None)
    print("\n".join(tail))
    table = print_table(rows, ["trial", "status", "resolution", "knn_top1", "pixel floor", "random floor", "linear_top1", "trial wall s", "img/s"]) if rows else ""
    verdict = "met" if completed.returncode == 0 and wall < TARGET_S else "missed"
    print(f"\nquickstart: exit {completed.returncode}, wall {wall:.1f} s, report written: {report is not None}; target < {TARGET_S:.0f} s -> {verdict}", flush=True)
    write_json(args.json, {"bench": "quickstart", "machine": where, "wall_s": wall, "returncode": completed.returncode, "rows": rows, "target": verdict, "table": table, "tail": tail})
    return 0 if completed.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
