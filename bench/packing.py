"""GPU packing: aggregate throughput of k concurrent 16 px trials on one GPU through Ray.

    python -m bench packing [--counts 1 2 4 8] [--resolution 16] [--width 1.0] [--batch 512]
        [--steps 200] [--warmup 30] [--json PATH]
    python -m bench packing --cpu-smoke     # the same Ray machinery on CPU, tiny (no figures)

Each trial is a Ray actor asking for 1/k GPU (Ray's fractional resources, as a study's
`resources.gpu: 1/k`), in its own process with its own CUDA context, running the
s3l_core training loop (uint8 data on the device, make_views, the trainer's step; see
bench/common.py) for a fixed number of steps. All k actors build and warm up first; then
their timed loops are started together and the aggregate is k x steps x batch over the
wall time until the last one finishes. Ray is started on loopback (sweeper.tune.loopback).
Targets (issue 5): 4 trials >= 3.5x and 8 trials >= 5x the aggregate of one.
Without CUDA it prints a message and exits 0 (unless --cpu-smoke).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from bench.common import ROOT, machine, print_table, write_json

TARGETS = {4: 3.5, 8: 5.0}


class PackedTrial:
    """One trial's process: data, model and step built once; `run` times `steps` steps."""

    def __init__(self, width: float, resolution: int, batch: int, device: str, seed: int, threads: int):
        import torch

        from bench.common import TrainStep, s3l_batches, synthetic_images

        torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.batch = batch
        images = synthetic_images(16 * batch, 3, max(32, resolution), self.device, seed)
        labels = torch.randint(0, 10, (16 * batch,), generator=torch.Generator().manual_seed(seed)).to(self.device)
        self.batches = s3l_batches(images, labels, batch, resolution, seed=seed)
        self.step = TrainStep(width, resolution, self.device, seed=seed)

    def warmup(self, steps: int) -> str:
        from bench.common import timed_steps

        if steps:
            timed_steps(self.step, self.batches, 0, steps)
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")

    def run(self, steps: int) -> dict[str, float]:
        from bench.common import timed_steps

        start = time.time()
        timing = timed_steps(self.step, self.batches, 0, steps)
        return {"start": start, "end": time.time(), "img_per_s": steps * self.batch / timing["seconds"]}


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    import ray

    from sweeper.tune.loopback import start_local_ray

    # Ray's workers inherit this environment: let them import `bench` without a runtime_env.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    cpus = os.cpu_count() or 2
    start_local_ray(num_cpus=cpus, num_gpus=1, log_to_driver=False)
    remote_trial = ray.remote(PackedTrial)
    rows: list[dict[str, Any]] = []
    base = None
    try:
        for k in args.counts:
            cpu_each = min(1.0, cpus / k)
            actors = [
                remote_trial.options(num_gpus=1.0 / k, num_cpus=cpu_each).remote(args.width, args.resolution, args.batch, args.device, seed, max(1, int(cpu_each)))
                for seed in range(k)
            ]
            visible = ray.get([a.warmup.remote(args.warmup) for a in actors])
            started = time.perf_counter()
            results = ray.get([a.run.remote(args.steps) for a in actors])
            wall = time.perf_counter() - started
            aggregate = k * args.steps * args.batch / wall
            base = base or (aggregate if k == 1 else None)
            rows.append(
                {
                    "trials": k,
                    "GPU each": f"1/{k}",
                    "aggregate img/s": aggregate,
                    "per trial img/s (mean)": sum(r["img_per_s"] for r in results) / k,
                    "x one trial": aggregate / base if base else None,
                    "target": f">= {TARGETS[k]}x" if k in TARGETS else "",
                    "start skew s": max(r["start"] for r in results) - min(r["start"] for r in results),
                    "devices seen": ",".join(sorted(set(visible))),
                }
            )
            print(f"  {k} trials: {aggregate:,.0f} img/s aggregate", file=sys.stderr, flush=True)
            for actor in actors:
                ray.kill(actor)
    finally:
        ray.shutdown()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench packing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per trial")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--cpu-smoke", action="store_true", help="run the Ray machinery on CPU with tiny settings (no meaningful figures)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    import torch

    if args.cpu_smoke:
        args.device = "cpu"
        args.counts, args.width, args.batch, args.steps, args.warmup = [1, 2], 0.0625, 16, 2, 1
    elif not torch.cuda.is_available():
        print("packing: skipped, CUDA is not available (this figure needs one GPU shared by 1-8 trials)", flush=True)
        write_json(args.json, {"bench": "packing", "skipped": "no CUDA"})
        return 0
    else:
        args.device = "cuda"
    try:
        import ray  # noqa: F401
    except ImportError:
        print("packing: skipped, Ray is not importable (on an offline GPU host run .device/install.sh first)", flush=True)
        write_json(args.json, {"bench": "packing", "skipped": "no Ray"})
        return 0
    where = machine(args.device)
    print(f"machine: {where}", flush=True)
    print(
        f"{args.resolution} px SimCLR ResNet-18 width {args.width}, batch {args.batch}, {args.steps} timed steps per trial after {args.warmup} warm-up; "
        f"{'bf16 autocast + channels_last' if args.device == 'cuda' else 'CPU smoke run'}",
        flush=True,
    )
    rows = measure(args)
    table = print_table(rows, ["trials", "GPU each", "aggregate img/s", "per trial img/s (mean)", "x one trial", "target", "start skew s"])
    verdicts = {}
    for row in rows:
        if row["trials"] in TARGETS and row["x one trial"] is not None and not args.cpu_smoke:
            verdicts[row["trials"]] = "met" if row["x one trial"] >= TARGETS[row["trials"]] else "missed"
    for k, verdict in verdicts.items():
        print(f"target {k} trials >= {TARGETS[k]}x one: {verdict}")
    write_json(args.json, {"bench": "packing", "machine": where, "args": vars(args), "rows": rows, "targets": verdicts, "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
