"""Scale: studies of 100 and 1,000 (and with --max 10,000) trivial trials through the real CLI.

    python -m bench scale [--sizes 100,1000] [--max] [--keep DIR] [--json PATH]

Each study is the cheapest trial the config accepts (the `digits` set, ResNet-10 at width 0.0625,
8 px, 1 epoch of 10% of the data, kNN only), one trial per seed, 2 at a time on an embedded Ray.
For each size it runs, as subprocesses whose own CPU time and peak RSS are sampled from /proc:

  run          `python -m sweeper run`: per-trial overhead by decile of the run (the decile's
               slot-seconds per trial, from its records' landing times, minus the mean train()
               wall its records give), driver CPU, driver peak RSS, store files and bytes per trial
  peer         a plain Ray Tune script (`bench/scale_peer.py`: reuse_actors=True, the same trials,
               2 at a time) measured the same way
  re-run       `run` again with nothing new; `status`, `report` and `estimate` of the full store;
               `run` with one more seed (its wall minus that trial's train() wall)

Targets (issue 26): the last decile's overhead within 1.25x of the first and at most the peer's;
driver peak RSS at 1,000 trials within 10% of 100; at most 50 KB per finished trial beyond the
kept encoder; a re-run with nothing new under 3 s, with one new trial its train time plus 15 s;
`estimate`, `status` and `report` each under 15 s of CPU at 10,000 trials.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import ROOT, machine, print_table, write_json
from tests.sweeper.conftest import TINY_TRIAL, write_study

SLOTS = 2
# the tests' tiny trial, narrower, one epoch, on `digits`: the cheapest trial the config accepts
TRIVIAL_TRIAL = {**TINY_TRIAL, "backbone": {**TINY_TRIAL["backbone"], "width": 0.0625}, "epochs": 1, "data_fraction": 0.1}
CLOCK_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def write_scale_study(directory: Path, trials: int) -> Path:
    """The tests' study file (`write_study`) with one trivial trial per seed on `digits`."""
    return write_study(directory, f"scale-{trials}", grid=[8], seeds=list(range(trials)), dataset="digits",
                       trial=TRIVIAL_TRIAL, failure={"max_retries": 0}, max_concurrent=SLOTS)


class ProcessSampler(threading.Thread):
    """The process's own CPU seconds (user + system, children excluded) and peak RSS (VmHWM),
    read from /proc every `every_s` until it exits."""

    def __init__(self, pid: int, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.cpu_s = 0.0
        self.peak_rss_mb = 0.0

    def run(self) -> None:
        stat, status = Path(f"/proc/{self.pid}/stat"), Path(f"/proc/{self.pid}/status")
        while True:
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                self.cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_rss_mb = int(line.split()[1]) / 1024
            except (OSError, IndexError, ValueError):
                return  # exited
            time.sleep(self.every_s)


def measured(argv: list[str]) -> dict[str, Any]:
    """Run `argv`; its wall time, CPU time, peak RSS, exit status and output tail.

    `cpu_s` and `peak_rss_mb` are the process's own, sampled from /proc every 0.2 s (Ray's
    processes, which a driver starts and reaps, are left out); a command that ends before the
    first sample (no Ray: the no-op run, status, report, estimate) gets the kernel's figures for
    it and anything it waited for, from wait4."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        sampler = ProcessSampler(process.pid)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.join()
        log.seek(0)
        output = log.read()
    if process.returncode != 0:
        print(output[-3000:], file=sys.stderr)
    sampled = sampler.peak_rss_mb > 0
    return {"argv": argv[1:], "rc": process.returncode, "wall_s": wall,
            "cpu_s": sampler.cpu_s if sampled else usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": sampler.peak_rss_mb if sampled else usage.ru_maxrss / 1024,
            "waited_cpu_s": usage.ru_utime + usage.ru_stime, "tail": output[-600:]}


def decile_overheads(landed: list[float], train_walls: list[float], start: float) -> list[float]:
    """Per decile of the run: slot-seconds per trial (from the decile's landing times) minus the
    decile's mean train() wall. The first trial's interval holds the run's start, so it is left out."""
    order = sorted(range(len(landed)), key=landed.__getitem__)
    times = [start] + [landed[i] for i in order]
    walls = [train_walls[i] for i in order]
    n = len(order)
    out = []
    for d in range(10):
        lo, hi = max(1, d * n // 10), (d + 1) * n // 10
        if hi <= lo:
            out.append(float("nan"))
            continue
        per_trial = (times[hi] - times[lo]) * SLOTS / (hi - lo)
        out.append(per_trial - sum(walls[lo:hi]) / (hi - lo))
    return out


def store_figures(store: Path) -> dict[str, Any]:
    files = [p for p in store.rglob("*") if p.is_file()]
    records = [json.loads(p.read_text()) for p in (store / "trials").glob("*.json")]
    finished = [r for r in records if r.get("status") == "finished"]
    encoder = sum(p.stat().st_size for p in files if p.name == "encoder.pt")
    total = sum(p.stat().st_size for p in files)
    landed = [(store / "trials" / f"{r['trial_id']}.json").stat().st_mtime for r in finished]
    return {
        "files": len(files), "bytes": total, "encoder_bytes": encoder, "finished": len(finished),
        "bytes_per_trial_beyond_encoder": (total - encoder) / max(1, len(finished)),
        "landed": landed, "train_walls": [r["metrics"]["wall_s"] for r in finished],
    }


def scale_run(directory: Path, trials: int) -> dict[str, Any]:
    py = [sys.executable, "-m", "sweeper"]
    study = write_scale_study(directory, trials)
    store = directory / "runs" / f"scale-{trials}"
    print(f"{trials} trials through `run` ...", flush=True)
    start = time.time()
    run = measured([*py, "run", str(study)])
    figures = store_figures(store)
    run["deciles"] = decile_overheads(figures.pop("landed"), figures.pop("train_walls"), start)
    run.update(figures)

    print(f"{trials} trials through a plain Ray Tune script ...", flush=True)
    peer_json = directory / f"peer-{trials}.json"
    peer = measured([sys.executable, "-m", "bench.scale_peer", str(study), str(peer_json)])
    landings = json.loads(peer_json.read_text())
    peer["deciles"] = decile_overheads(landings["landed"], landings["train_walls"], landings["start"])

    print("re-run, status, report, estimate ...", flush=True)
    again = {name: measured([*py, *argv]) for name, argv in (
        ("run, nothing new", ["run", str(study)]),
        ("status", ["status", str(study)]),
        ("report", ["report", str(study)]),
        ("estimate", ["estimate", str(study)]),
    )}
    grown = yaml.safe_load(study.read_text())
    grown["seeds"].append(trials)
    study.write_text(yaml.safe_dump(grown, sort_keys=False))
    one_new = measured([*py, "run", str(study)])
    newest = max((store / "trials").glob("*.json"), key=lambda p: p.stat().st_mtime)
    one_new["new_trial_train_s"] = json.loads(newest.read_text())["metrics"]["wall_s"]
    again["run, one new trial"] = one_new
    return {"trials": trials, "run": run, "peer": peer, "again": again}


def synthetic_store(directory: Path, real_store: Path, trials: int) -> Path:
    """A store of `trials` finished records copied from one real record of `real_store` (same
    shape, seed and trial id changed), with the marker, resolved study and state a finished run
    leaves: what `status`, `report`, `estimate` and a no-op `run` read at that size, without the
    hours of training. Returns the study file."""
    from sweeper.store.local import MARKER_NAME, Store, marker, store_root, trial_id
    from sweeper.study.load import load_study

    template = json.loads(next((real_store / "trials").glob("*.json")).read_text())
    path = write_scale_study(directory, trials)
    grown = yaml.safe_load(path.read_text())
    grown["name"] = f"synthetic-{trials}"
    path = path.with_name(f"synthetic-{trials}.yaml")
    path.write_text(yaml.safe_dump(grown, sort_keys=False))
    study = load_study(path)
    store = Store(store_root(study))
    store.root.mkdir(parents=True, exist_ok=True)
    for seed in range(trials):
        config = {**template["config"], "seed": seed}
        store.write_record({**template, "trial_id": trial_id(config), "config": config, "point": {**template["point"], "seed": seed}})
    store.put_json(MARKER_NAME, marker(study.name))
    store.put("study.yaml", study.resolved_yaml())
    store.put_json("state.json", {"state": "finished"})
    return path


def read_path(study: Path) -> dict[str, Any]:
    """`report` (rebuilds tables and report), `status`, `estimate`, then `run` with nothing new."""
    py = [sys.executable, "-m", "sweeper"]
    return {name: measured([*py, *argv]) for name, argv in (
        ("report", ["report", str(study)]),
        ("status", ["status", str(study)]),
        ("estimate", ["estimate", str(study)]),
        ("run, nothing new", ["run", str(study)]),
    )}


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    n, run, peer, again = result["trials"], result["run"], result["peer"], result["again"]
    first, last = run["deciles"][0], run["deciles"][-1]
    rows = [
        {"figure": f"{n} trials: run wall / driver CPU", "value": f"{run['wall_s']:.1f} s / {run['cpu_s']:.1f} s", "peer": f"{peer['wall_s']:.1f} s / {peer['cpu_s']:.1f} s"},
        {"figure": "driver peak RSS", "value": f"{run['peak_rss_mb']:.0f} MB", "peer": f"{peer['peak_rss_mb']:.0f} MB"},
        {"figure": "overhead per trial by decile (s)", "value": " ".join(f"{x:.2f}" for x in run["deciles"]), "peer": " ".join(f"{x:.2f}" for x in peer["deciles"])},
        {"figure": "last decile / first", "value": f"{last / first:.2f}" if first > 0 else "-", "peer": ""},
        {"figure": "last decile, run / peer", "value": f"{last / peer['deciles'][-1]:.2f}" if peer["deciles"][-1] > 0 else "-", "peer": ""},
        {"figure": "store files / MB", "value": f"{run['files']} / {run['bytes'] / 1e6:.1f}", "peer": ""},
        {"figure": "bytes per trial beyond the kept encoder", "value": f"{run['bytes_per_trial_beyond_encoder'] / 1e3:.1f} KB", "peer": ""},
    ]
    for name, m in again.items():
        extra = f" (train {m['new_trial_train_s']:.1f} s)" if "new_trial_train_s" in m else ""
        rows.append({"figure": name, "value": f"{m['wall_s']:.1f} s wall, {m['cpu_s']:.1f} s CPU{extra}" + ("" if m["rc"] == 0 else f", exit {m['rc']}"), "peer": ""})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000", help="comma-separated trial counts")
    parser.add_argument("--max", action="store_true", help="add a 10,000-trial study")
    parser.add_argument("--keep", type=Path, help="keep the stores here instead of a temp dir")
    parser.add_argument("--synthetic", type=int, help="also time status, report, estimate and a no-op run on a store of this many "
                        "finished records copied from the first size's real ones (no training)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] + ([10_000] if args.max else [])
    where = machine("cpu")
    print(f"machine: {where}; load average at start {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        for n in sizes:
            results.append(scale_run(directory, n))
            results[-1]["load_after"] = os.getloadavg()
            print_table(rows_of(results[-1]), ["figure", "value", "peer"], title=f"{n} trials (load {os.getloadavg()[0]:.1f})")
        if args.synthetic:
            print(f"{args.synthetic} synthetic finished records ...", flush=True)
            study = synthetic_store(directory, directory / "runs" / f"scale-{sizes[0]}", args.synthetic)
            timed = read_path(study)
            rows = [{"figure": name, "value": f"{m['wall_s']:.1f} s wall, {m['cpu_s']:.1f} s CPU" + ("" if m["rc"] == 0 else f", exit {m['rc']}")}
                    for name, m in timed.items()]
            print_table(rows, ["figure", "value"], title=f"{args.synthetic} finished trials, read path (load {os.getloadavg()[0]:.1f})")
            results.append({"trials": args.synthetic, "synthetic": timed})
    if len(results) >= 2 and "run" in results[1]:
        a, b = results[0]["run"], results[1]["run"]
        print(f"\ndriver peak RSS {results[1]['trials']} vs {results[0]['trials']} trials: {100 * (b['peak_rss_mb'] / a['peak_rss_mb'] - 1):+.1f}%")
    write_json(args.json, {"bench": "scale", "machine": where, "args": {k: str(v) for k, v in vars(args).items()}, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
