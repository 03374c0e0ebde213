"""``python -m sweeper.report STORE_DIR [REPORT_DIR]``: write a report (default reports/<store name>)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeper.report", description=__doc__)
    parser.add_argument("store", type=Path, help="study store folder (runs/<name>)")
    parser.add_argument("report", type=Path, nargs="?", help="output folder (default: reports/<name>)")
    args = parser.parse_args(argv)
    if not (args.store / "results.parquet").exists():
        print(f"{args.store}: no results.parquet here", file=sys.stderr)
        return 2
    start = time.perf_counter()
    index = write_report(args.store, args.report or Path("reports") / args.store.resolve().name)
    print(f"{index} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
