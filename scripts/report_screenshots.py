"""Screenshots of a study's report for README and docs (headless Chromium).

    python scripts/report_screenshots.py runs/quickstart   # a real store
    python scripts/report_screenshots.py                   # a synthetic 3-seed study

Writes the report (to --report, default a temporary folder), then docs/img/report-headline.png,
report-pareto.png and report-s3l.png (--out; `--prefix quickstart` names them quickstart-*.png,
`--shots s3l` takes only that section), and prints the verdict line the report states.
The synthetic store comes from tests/sweeper/report/synthetic.py: 54 configurations of
resolution, width and data fraction, 3 seeds each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOTS = {"headline": "#headline", "pareto": "#pareto figure", "s3l": "#s3l"}  # <prefix>-<name>.png: the section shot


def synthetic_store(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "sweeper" / "report"))
    import synthetic

    return synthetic.make_store(folder / "synthetic-3-seeds", 162, name="synthetic-3-seeds", failed=0.0)


def main(argv: list[str] | None = None) -> int:
    from sweeper.report import write_report
    sys.path.insert(0, str(ROOT))  # the WebDriver client is a test tool (tests/browser.py), not part of the package
    from tests.browser import WebDriverError, headless_chromium

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, nargs="?", help="study store (default: a synthetic 3-seed study)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where the PNGs go")
    parser.add_argument("--report", type=Path, help="where the report is written (default: a temporary folder)")
    parser.add_argument("--prefix", default="report", help="file names: <prefix>-headline.png, ... (default: report)")
    parser.add_argument("--shots", nargs="+", choices=list(SHOTS), default=list(SHOTS), help="which sections (default: all)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="report-shots-") as scratch:
        scratch = Path(scratch)
        store = args.store or synthetic_store(scratch)
        if not (store / "results.parquet").exists():
            print(f"{store}: no results.parquet here", file=sys.stderr)
            return 2
        index = write_report(store, args.report or scratch / "report")
        args.out.mkdir(parents=True, exist_ok=True)
        try:
            with headless_chromium(scratch / "chromium", window=(1400, 1000)) as browser:
                browser.open(index.resolve().as_uri())
                browser.wait_for_images()
                for name in args.shots:
                    path = args.out / f"{args.prefix}-{name}.png"
                    path.write_bytes(browser.screenshot(SHOTS[name]))
                    print(path)
                print(browser.run("return document.getElementById('verdict').textContent"))
        except WebDriverError as exc:
            print(f"screenshots: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
