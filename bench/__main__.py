"""`python -m bench NAME [options]`: run one benchmark; `python -m bench NAME --help` for its options."""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "throughput": ("bench.throughput", "trainer images/s: s3l_core path vs peer DataLoader vs model-only ceiling"),
    "augment": ("bench.augment", "CPU data only: s3l_core make_views vs per-sample torchvision v2"),
    "packing": ("bench.packing", "1/2/4/8 concurrent 16 px trials on one GPU via Ray fractional GPUs"),
    "scale": ("bench.scale", "100 / 1,000 (--max: 10,000) trivial trials via the CLI vs a plain Ray Tune script"),
    "overhead": ("bench.overhead", "50 tiny trials through run_study vs 50 direct train() calls; driver RSS"),
    "learning": ("bench.learning", "each method on the Fashion-MNIST sample against its raw-pixel and random-encoder floors"),
    "quickstart": ("bench.quickstart", "wall time of `python -m sweeper run studies/quickstart.yaml`"),
    "report": ("bench.report_build", "report build time against trial count"),
    "startup": ("bench.startup", "start-up of `--help`, `--version` and `validate` (target under 1 s)"),
    "summary": ("bench.summary", "one table from the JSON files a bench/gpu.sh run wrote"),
}


def usage() -> str:
    lines = ["usage: python -m bench NAME [options]", "", "benchmarks:"]
    lines += [f"  {name:11s} {text}" for name, (_, text) in BENCHES.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHES:
        print(usage(), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(BENCHES[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
