"""Trainer throughput: images/s (two views, forward + backward + SGD step) of a SimCLR ResNet-18.

    python -m bench throughput [--device cuda] [--resolutions 16 32 64] [--width 1.0]
        [--batch 512] [--steps 50] [--warmup 10] [--workers 14] [--compile] [--json PATH]

Pipelines, measured side by side on one model definition and one step:
  s3l      s3l_core's path: uint8 images on the device, views from s3l_core.views.make_views
           per batch, the trainer's step (bf16 autocast + channels_last on CUDA)
  trainer  s3l_core.trainer.train() itself on a synthetic dataset of steps x batch images:
           its own per-epoch img/s of the second epoch (the first is warm-up / compilation)
  peer     per-sample torchvision v2 SimCLR transforms in a DataLoader with --workers
           processes feeding the same model and step
  model    the model alone on synthetic views already on the device (the ceiling)

Source images are random uint8, 3 channels, max(32, resolution) px (CIFAR-sized; 64 px
for the 64 px row). TFLOP/s uses s3l_core.cost.train_step_flops (counted on the meta
device); on CUDA it is also given as a share of the card's dense bf16 peak.
With --compile, model.loss goes through torch.compile (as TrialConfig.compile does) and
the time of the warm-up steps, which includes compilation, is reported as compile_s.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from bench.common import (
    TrainStep,
    bf16_peak,
    channel_mean_std,
    machine,
    print_table,
    s3l_batches,
    synthetic_images,
    timed_steps,
    write_json,
)
from s3l_core.backbone import conv_memory_format

PIPELINES = ("s3l", "trainer", "peer", "model")


def _reset_compiler(compile: bool) -> None:
    # Every pipeline compiles a fresh model's `loss`, the same code object each time: without
    # a reset, dynamo's per-code recompile limit would silently fall back to eager.
    if compile:
        torch._dynamo.reset()


def run_s3l(args: argparse.Namespace, device: torch.device, resolution: int, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    _reset_compiler(args.compile)
    step = TrainStep(args.width, resolution, device, compile=args.compile, compile_mode=args.compile_mode)
    timing = timed_steps(step, s3l_batches(images, labels, args.batch, resolution), args.warmup, args.steps)
    return {**timing, "flops": step.flops(args.batch)}


def run_model_only(args: argparse.Namespace, device: torch.device, resolution: int) -> dict[str, Any]:
    _reset_compiler(args.compile)
    step = TrainStep(args.width, resolution, device, compile=args.compile, compile_mode=args.compile_mode)
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (args.batch, 3, resolution, resolution)
    view1 = torch.randn(shape, device=device, generator=generator)
    view2 = torch.randn(shape, device=device, generator=generator)
    view1, view2 = (v.contiguous(memory_format=conv_memory_format(device)) for v in (view1, view2))
    labels = torch.zeros(args.batch, dtype=torch.long, device=device)

    def same_views():
        while True:
            yield view1, view2, labels

    timing = timed_steps(step, same_views(), args.warmup, args.steps)
    return {**timing, "flops": step.flops(args.batch)}


def run_peer(args: argparse.Namespace, device: torch.device, resolution: int, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    from bench.peer import peer_loader

    _reset_compiler(args.compile)
    step = TrainStep(args.width, resolution, device, compile=args.compile, compile_mode=args.compile_mode)
    mean, std = channel_mean_std(images)
    loader = peer_loader(images, labels, resolution, mean.tolist(), std.tolist(), args.batch, args.warmup + args.steps, args.workers, device.type == "cuda")
    batches = iter(loader)
    timing = timed_steps(step, batches, args.warmup, args.steps)
    del batches, loader  # stops the persistent workers
    return {**timing, "flops": step.flops(args.batch)}


def run_trainer(args: argparse.Namespace, device: torch.device, resolution: int, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """s3l_core.train() on a synthetic ImageDataset: epoch 1 warms up, epoch 2 is measured."""
    from s3l_core.config import TrialConfig
    from s3l_core.image_dataset import ImageDataset
    from s3l_core.trainer import train

    _reset_compiler(args.compile)
    cpu_images, cpu_labels = images.cpu(), labels.cpu()
    dataset = ImageDataset(
        name="synthetic",
        train_images=cpu_images,
        train_labels=cpu_labels,
        test_images=cpu_images[: args.batch],
        test_labels=cpu_labels[: args.batch],
        classes=tuple(str(i) for i in range(10)),
    )
    config = TrialConfig.from_dict(
        {
            "dataset": "fashion-mnist-sample",  # a valid name; the dataset itself is passed in
            "method": "simclr",
            "backbone": {"depth": 18, "width": args.width, "stages": 4},
            "resolution": resolution,
            "epochs": 2,
            "batch_size": args.batch,
            "optimizer": {"lr": 0.1},
            "eval": {"every": 1000, "knn_k": 20, "linear_probe": False, "floors": False, "resolution": resolution},
            "device": str(device),
            "compile": args.compile,
        }
    )
    started = time.perf_counter()
    result = train(config, dataset=dataset)
    total = time.perf_counter() - started
    first, second = result.epochs
    epoch_s = [len(images) // args.batch * args.batch / e.img_per_s for e in (first, second)]
    return {
        "seconds": epoch_s[1],
        "warmup_s": epoch_s[0],
        "step_s": epoch_s[1] / (len(images) // args.batch),
        "trainer_total_s": total,
        "flops": result.epochs[1].train_pflops_cum * 1e15 / (2 * (len(images) // args.batch)),
    }


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    device = torch.device(args.device)
    peak = bf16_peak(device)
    rows: list[dict[str, Any]] = []
    for resolution in args.resolutions:
        source = args.source_size or max(32, resolution)
        count = max(args.steps, args.warmup) * args.batch
        images = synthetic_images(count, 3, source, device)
        labels = torch.randint(0, 10, (count,), generator=torch.Generator().manual_seed(0)).to(device)
        results: dict[str, dict[str, Any]] = {}
        for pipeline in args.pipelines:
            if pipeline == "s3l":
                results[pipeline] = run_s3l(args, device, resolution, images, labels)
            elif pipeline == "model":
                results[pipeline] = run_model_only(args, device, resolution)
            elif pipeline == "peer":
                results[pipeline] = run_peer(args, device, resolution, images, labels)
            elif pipeline == "trainer":
                results[pipeline] = run_trainer(args, device, resolution, images, labels)
            r = results[pipeline]
            r["img_per_s"] = args.batch / r["step_s"]
            print(f"  {resolution:3d} px {pipeline:8s} {r['img_per_s']:10.0f} img/s  (warm-up {r['warmup_s']:.1f} s)", file=sys.stderr, flush=True)
        ceiling = results.get("model", {}).get("img_per_s")
        peer = results.get("peer", {}).get("img_per_s")
        for pipeline, r in results.items():
            tflops = r["flops"] / r["step_s"] / 1e12
            label = pipeline if pipeline != "peer" else f"peer ({args.workers} workers)"
            rows.append(
                {
                    "resolution": resolution,
                    "pipeline": label,
                    "compile": args.compile,
                    "img/s": r["img_per_s"],
                    "step ms": r["step_s"] * 1e3,
                    "TFLOP/s": tflops,
                    "% bf16 peak": 100 * tflops * 1e12 / peak if peak else None,
                    "x ceiling": r["img_per_s"] / ceiling if ceiling else None,
                    "x peer": r["img_per_s"] / peer if peer else None,
                    "warm-up s": r["warmup_s"],
                }
            )
        del images, labels
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench throughput", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--width", type=float, default=1.0, help="ResNet-18 channel multiplier (1.0 = 64 base channels)")
    parser.add_argument("--batch", type=int, default=512, help="images per step (each gives two views)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per pipeline")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation happens here)")
    parser.add_argument("--workers", type=int, default=None, help="peer DataLoader workers (default: min(14, CPUs-2) on CUDA, 2 on CPU)")
    parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    parser.add_argument("--compile", action="store_true", help="torch.compile(model.loss), as TrialConfig.compile")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    parser.add_argument("--source-size", type=int, default=0, help="source image size (default max(32, resolution))")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("throughput: --device cuda asked for but CUDA is not available", file=sys.stderr)
        return 2
    if args.workers is None:
        args.workers = min(14, max(1, (torch.multiprocessing.cpu_count() or 2) - 2)) if device.type == "cuda" else 2
    if args.threads:
        torch.set_num_threads(args.threads)
    where = machine(device)
    print(f"machine: {where}", flush=True)
    print(
        f"ResNet-18 width {args.width} SimCLR, batch {args.batch} (x2 views), {args.steps} timed steps after {args.warmup} warm-up, "
        f"compile={args.compile}{' mode=' + args.compile_mode if args.compile_mode else ''}, "
        f"{'bf16 autocast + channels_last' if device.type == 'cuda' else 'fp32'}, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    rows = measure(args)
    columns = ["resolution", "pipeline", "img/s", "step ms", "TFLOP/s"]
    if device.type == "cuda":
        columns.append("% bf16 peak")
    columns += ["x ceiling", "x peer", "warm-up s"]
    table = print_table(rows, columns)
    write_json(args.json, {"bench": "throughput", "machine": where, "args": vars(args), "rows": rows, "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
