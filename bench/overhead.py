"""Sweeper overhead: a study of N tiny trials through run_study against N direct train() calls.

    python -m bench overhead [--trials 50] [--concurrent 1] [--json PATH]

The study is the test suite's tiny CPU study (tests/sweeper/conftest.write_study) with
even smaller trials: ResNet-10 width 0.0625 at 8 px, 1 epoch, 2% of the Fashion-MNIST
sample, kNN on, floors and linear probe off; N seeds make N trials. It runs one trial
at a time (--concurrent 1) so each trial's overhead is a time interval:

  interval_i   time between the (i-1)-th and the i-th trial record landing in
               runs/<name>/trials/ (the first interval, which holds Tune's start, is left out)
  direct       wall time of train(config) called in this process for the same N configs,
               with torch.set_num_threads(1) as the trainable sets for a 1-CPU trial
  overhead     median(interval) - median(direct)

Ray's start-up (start_local_ray, loopback) is timed and reported apart. A background
thread samples this driver's resident memory (VmRSS) and the number of trial records,
giving the RSS when 10 and when N records exist. Targets (issue 5): overhead <= 1 s per
trial (median); driver RSS within 10% from trial 10 to trial 50.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine, print_table, write_json

TARGET_OVERHEAD_S = 1.0
TARGET_RSS_GROWTH = 0.10


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    """Samples (seconds, trial records, VmRSS MB) every `every_s` until stopped."""

    def __init__(self, trials_dir: Path, marks: tuple[int, ...], every_s: float = 0.1):
        super().__init__(daemon=True)
        self.trials_dir, self.marks, self.every_s = trials_dir, marks, every_s
        self.samples: list[tuple[float, int, float]] = []
        self.at: dict[int, float] = {}
        self.stop = threading.Event()

        self.start_time = time.perf_counter()

    def sample(self) -> None:
        count = len(list(self.trials_dir.glob("*.json"))) if self.trials_dir.exists() else 0
        rss = vm_rss_mb()
        self.samples.append((time.perf_counter() - self.start_time, count, rss))
        for mark in self.marks:
            if count >= mark and mark not in self.at:
                self.at[mark] = rss

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every_s)


def run_through_sweeper(study_path: Path, storage: Path, trials: int) -> dict[str, Any]:
    import json

    import ray

    from sweeper.tune.loopback import start_local_ray
    from sweeper.tune.runner import run_study
    from sweeper.study.load import load_study

    study = load_study(study_path)
    started = time.perf_counter()
    start_local_ray(num_cpus=2, log_to_driver=False)
    ray_start_s = time.perf_counter() - started
    trials_dir = storage / study.name / "trials"
    sampler = RssSampler(trials_dir, (10, trials))
    sampler.start()
    rss_before = vm_rss_mb()
    run_start = time.time()
    started = time.perf_counter()
    try:
        summary = run_study(study, storage=str(storage), report=False)
        study_s = time.perf_counter() - started
    finally:
        sampler.stop.set()
        sampler.join()
        sampler.sample()  # the last record lands a few ms before run_study returns
        ray.shutdown()
    records = [json.loads(p.read_text()) for p in trials_dir.glob("*.json")]
    landed = sorted(p.stat().st_mtime for p in trials_dir.glob("*.json"))
    intervals = [b - a for a, b in zip([run_start] + landed[:-1], landed)]
    return {
        "ray_start_s": ray_start_s,
        "study_s": study_s,
        "finished": summary.finished,
        "failed": summary.failed,
        "intervals": intervals,
        "train_wall_s": [r["metrics"]["wall_s"] for r in records if r.get("status") == "finished"],
        "rss_before_mb": rss_before,
        "rss_at": sampler.at,
        "rss_max_mb": max(s[2] for s in sampler.samples),
        "rss_samples": sampler.samples[:: max(1, len(sampler.samples) // 200)],
    }


def run_directly(study_path: Path) -> dict[str, Any]:
    import torch

    from s3l_core.trainer import train
    from sweeper.study.space import points
    from sweeper.study.load import load_study

    study = load_study(study_path)
    torch.set_num_threads(1)  # as sweeper.tune.trainable does for a 1-CPU trial
    walls = []
    started = time.perf_counter()
    for point in points(study):
        config = dataclasses.replace(study.trial_config(point), device="cpu")
        t = time.perf_counter()
        train(config)
        walls.append(time.perf_counter() - t)
    return {"total_s": time.perf_counter() - started, "walls": walls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench overhead", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=1, help="max_concurrent of the study (1: overhead per trial is an interval)")
    parser.add_argument("--keep", type=Path, help="keep the study store here instead of a temp dir")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.sweeper.conftest import TINY_TRIAL, write_study

    # the tests' tiny trial, narrower and one epoch: the figure is what the sweeper adds per trial
    tiny_trial = {**TINY_TRIAL, "backbone": {**TINY_TRIAL["backbone"], "width": 0.0625}, "epochs": 1}

    where = machine("cpu")
    print(f"machine: {where}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        study_path = write_study(directory, "overhead", grid=[8], seeds=list(range(args.trials)), trial=tiny_trial, max_concurrent=args.concurrent)
        print(f"{args.trials} trials through run_study (max_concurrent {args.concurrent}) ...", flush=True)
        swept = run_through_sweeper(study_path, directory / "runs", args.trials)
        print(f"{args.trials} direct train() calls ...", flush=True)
        direct = run_directly(study_path)

    intervals = swept["intervals"][1:]  # the first holds Tune's own start
    median_interval = statistics.median(intervals)
    median_direct = statistics.median(direct["walls"])
    median_in_ray = statistics.median(swept["train_wall_s"])
    overhead = median_interval - median_direct
    rss10, rssn = swept["rss_at"].get(10), swept["rss_at"].get(args.trials)
    growth = (rssn - rss10) / rss10 if rss10 and rssn else None
    rows = [
        {"figure": "Ray start-up (start_local_ray, loopback)", "value": swept["ray_start_s"], "unit": "s"},
        {"figure": f"run_study total, {args.trials} trials ({swept['finished']} finished, {swept['failed']} failed)", "value": swept["study_s"], "unit": "s"},
        {"figure": f"{args.trials} direct train() calls total", "value": direct["total_s"], "unit": "s"},
        {"figure": "first interval (Tune start + trial 1)", "value": swept["intervals"][0], "unit": "s"},
        {"figure": "median interval between trial records (trials 2..N)", "value": median_interval, "unit": "s"},
        {"figure": "median direct train() wall", "value": median_direct, "unit": "s"},
        {"figure": "median train() wall inside Ray (record metrics.wall_s)", "value": median_in_ray, "unit": "s"},
        {"figure": "per-trial overhead, median interval - median direct", "value": overhead, "unit": "s"},
        {"figure": "  of which launch/report/teardown (median interval - median in-Ray train)", "value": median_interval - median_in_ray, "unit": "s"},
        {"figure": "per-trial overhead, mean ((study - direct) / N, Tune start/stop included)", "value": (swept["study_s"] - direct["total_s"]) / args.trials, "unit": "s"},
        {"figure": "driver RSS before run_study", "value": swept["rss_before_mb"], "unit": "MB"},
        {"figure": "driver RSS at 10 trial records", "value": rss10, "unit": "MB"},
        {"figure": f"driver RSS at {args.trials} trial records", "value": rssn, "unit": "MB"},
        {"figure": "driver RSS max during run_study", "value": swept["rss_max_mb"], "unit": "MB"},
        {"figure": f"driver RSS growth, trial 10 -> {args.trials}", "value": 100 * growth if growth is not None else None, "unit": "%"},
    ]
    table = print_table(rows, ["figure", "value", "unit"])
    verdicts = {
        "overhead": "met" if overhead <= TARGET_OVERHEAD_S else "missed",
        "rss": None if growth is None else ("met" if abs(growth) <= TARGET_RSS_GROWTH else "missed"),
    }
    print(f"\ntarget per-trial overhead <= {TARGET_OVERHEAD_S:g} s (median): {overhead:.2f} s -> {verdicts['overhead']}")
    if growth is not None:
        print(f"target driver RSS within 10% from trial 10 to {args.trials}: {100 * growth:+.1f}% -> {verdicts['rss']}")
    write_json(args.json, {"bench": "overhead", "machine": where, "args": vars(args), "rows": rows, "swept": swept, "direct": direct, "targets": verdicts, "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
