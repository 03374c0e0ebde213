"""Report build time against trial count (generated results tables).

    python bench/report_build.py [--sizes 100 1000 10000] [--repeat 1]

For each size: generate a study store (results + 10 epochs per trial) with the test
generator, then time ``write_report`` (reading the store included, generation excluded).
The first build in the process also pays for matplotlib's first figure; a warm-up build
on a tiny store runs first so every row is measured alike. Target: 1000 trials < 10 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "sweeper" / "report")]

import pandas as pd  # noqa: E402
import synthetic  # noqa: E402

from sweeper.report import write_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=1, help="builds per size; the best is reported")
    parser.add_argument("--keep", type=Path, help="write the stores and reports here instead of a temp dir")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        warm = synthetic.make_store(root / "store-warmup", 10)
        write_report(warm, root / "report-warmup")
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        print(f"{'trials':>8} {'epoch rows':>11} {'build s':>9} {'html MB':>8} {'figures':>8}")
        for n in args.sizes:
            store = synthetic.make_store(root / f"store-{n}", n, running=min(5, n // 100))
            epochs_rows = len(pd.read_parquet(store / "epochs.parquet", columns=["epoch"]))
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                index = write_report(store, root / f"report-{n}")
                best = min(best, time.perf_counter() - start)
            size_mb = index.stat().st_size / 1e6
            figures = len(list(index.parent.glob("*.png")))
            print(f"{n:>8} {epochs_rows:>11} {best:>9.2f} {size_mb:>8.2f} {figures:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
