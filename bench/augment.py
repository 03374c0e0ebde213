"""CPU data-only: s3l_core's batched views against the per-sample torchvision v2 pipeline.

    python -m bench augment [--resolution 28] [--batch 512] [--images 10240] [--workers 2 0]

Source: the Fashion-MNIST sample bundled with s3l_core (uint8, 1 x 28 x 28). Both sides
make two SimCLR views per image (crop, flip, jitter, grayscale, blur, normalise) and
nothing else: no model. Rates are source images per second (each gives two views).
  s3l_core       make_views on batches indexed from the uint8 tensor, in this process
                 (torch's intra-op threads: all cores)
  peer, N work.  DataLoader(batch, shuffle, N worker processes) over a Dataset whose
                 __getitem__ runs the v2 transforms on one image twice (bench/peer.py)
Target (issue 5): s3l_core >= 10x the per-sample pipeline.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from bench.common import machine, print_table, write_json
from bench.peer import peer_loader
from s3l_core.config import AugmentConfig
from s3l_core.data import channel_stats, load_dataset
from s3l_core.views import make_views, preset_for

TARGET_RATIO = 10.0


def time_s3l(images: torch.Tensor, resolution: int, batch: int, total: int, repeat: int) -> float:
    mean_list, std_list = channel_stats(images)
    mean, std = torch.tensor(mean_list), torch.tensor(std_list)
    preset = preset_for("simclr", AugmentConfig(), resolution)
    generator = torch.Generator().manual_seed(1)
    order = torch.Generator().manual_seed(0)
    steps = total // batch
    make_views(images[:batch], resolution, preset, mean, std, generator)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        done = 0
        while done < steps:
            permutation = torch.randperm(len(images), generator=order)
            for i in range(min(steps - done, len(images) // batch)):
                make_views(images[permutation[i * batch : (i + 1) * batch]], resolution, preset, mean, std, generator)
                done += 1
        best = min(best, time.perf_counter() - start)
    return steps * batch / best


def time_peer(images: torch.Tensor, labels: torch.Tensor, resolution: int, batch: int, total: int, workers: int) -> tuple[float, float]:
    """(images/s after the first batch, seconds to the first batch: worker start-up)."""
    mean, std = channel_stats(images)
    steps = total // batch
    loader = peer_loader(images, labels, resolution, mean, std, batch, steps + 1, workers, pin_memory=False)
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    rate = steps * batch / (time.perf_counter() - start)
    del batches, loader
    return rate, first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench augment", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=28)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--images", type=int, default=10240, help="source images timed per pipeline")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 0], help="peer DataLoader worker counts")
    parser.add_argument("--repeat", type=int, default=3, help="s3l_core passes; the best is reported")
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    data = load_dataset("fashion-mnist-sample")
    images, labels = data.train_images, data.train_labels
    where = machine("cpu")
    print(f"machine: {where}; torch threads {torch.get_num_threads()}", flush=True)
    print(f"data: {data.name} {tuple(images.shape)} uint8 -> two SimCLR views at {args.resolution} px, batch {args.batch}, {args.images} images per pipeline", flush=True)

    s3l_rate = time_s3l(images, args.resolution, args.batch, args.images, args.repeat)
    rows: list[dict[str, Any]] = [{"pipeline": f"s3l_core make_views ({torch.get_num_threads()} threads)", "img/s": s3l_rate, "start-up s": None}]
    for workers in args.workers:
        rate, first = time_peer(images, labels, args.resolution, args.batch, args.images, workers)
        rows.append({"pipeline": f"torchvision v2 per-sample, DataLoader {workers} workers", "img/s": rate, "start-up s": first})
    for row in rows:
        row["s3l_core speed-up"] = s3l_rate / row["img/s"]
    table = print_table(rows, ["pipeline", "img/s", "s3l_core speed-up", "start-up s"])
    best_peer = max(r["img/s"] for r in rows[1:]) if len(rows) > 1 else None
    ratio = s3l_rate / best_peer if best_peer else None
    verdict = None
    if ratio is not None:
        verdict = "met" if ratio >= TARGET_RATIO else "missed"
        print(f"\ntarget s3l_core >= {TARGET_RATIO:g}x the fastest per-sample pipeline: {ratio:.1f}x -> {verdict}", flush=True)
    write_json(args.json, {"bench": "augment", "machine": where, "args": vars(args), "rows": rows, "ratio": ratio, "target": verdict, "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
