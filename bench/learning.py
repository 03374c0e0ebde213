"""Does every method really learn? Each method on the Fashion-MNIST sample against its floors.

    python -m bench learning [--methods simclr,moco_v2,byol,simsiam] [--epochs N] [--lr-scales 1,3,10]
                             [--set KEY=VALUE ...] [--json PATH]

Trains each method with the shared settings below (the method's own recipe for optimiser,
learning rate and heads) and prints, per method, the test kNN top-1 beside its raw-pixel
and random-encoder floors (same architecture, same evaluation), the validation kNN, the
effective rank of the normalised test features (collapse shows as a rank near 1) and the
seconds it took. A method "learns" when its test kNN is above BOTH floors. Each method runs
in its own process so the seconds are its own (no shared warm caches).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, machine, print_table, write_json
from s3l_core.recipes import RECIPES

METHODS = ("simclr", "moco_v2", "byol", "simsiam")
# Settings every method shares; recorded with the figures in docs/BENCHMARKS.md.
SHARED = {
    "dataset": "fashion-mnist-sample",
    "resolution": 14,
    "backbone.width": 0.25,
    "batch_size": 64,  # short CPU runs are step-bound: 64 gives twice the steps of 128 per epoch
    "augment.min_scale": 0.4,  # gentler crops than the presets' 0.08 / 0.2 learn faster in a few epochs
    "eval.resolution": 14,
    "eval.every": 4,
    "device": "cpu",
}


def run_method(method: str, epochs: int, extra: dict[str, str], out: Path) -> dict:
    command = [sys.executable, "-m", "s3l_core", "train", "--method", method, "--epochs", str(epochs), "--out", str(out)]
    for key, value in {**{k: json.dumps(v) if not isinstance(v, str) else v for k, v in SHARED.items()}, **extra}.items():
        command += ["--set", f"{key}={value}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    print("$ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def row_for(method: str, lr: float, m: dict) -> dict[str, str]:
    learns = m["knn_top1"] > max(m["knn_pixels_top1"], m["knn_random_top1"])
    return {
        "method": method, "lr": f"{lr:g}", "test kNN": f"{m['knn_top1']:.4f}", "pixel floor": f"{m['knn_pixels_top1']:.4f}",
        "random floor": f"{m['knn_random_top1']:.4f}", "val kNN": f"{m['knn_val_top1']:.4f}",
        "linear": f"{m['linear_top1']:.4f}" if m.get("linear_top1") is not None else "-",
        "feature rank": f"{m['feature_rank']:.1f}", "seconds": f"{m['wall_s']:.0f}", "above both": "yes" if learns else "NO",
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench learning", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--lr-scales", default="1",
        help="comma list of multipliers of each method's learning rate (its recipe's, or --set optimizer.lr's): a grid, picked by val kNN, never by test",
    )  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any further trial key, as s3l_core's --set")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.set)
    device = extra.get("device", SHARED["device"])
    scales = [float(x) for x in args.lr_scales.split(",")]
    print(f"machine: {machine(device)}", flush=True)
    print(f"shared settings: {SHARED} epochs {args.epochs} {extra} lr scales {scales}", flush=True)
    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            for scale in scales:
                base_lr = float(extra["optimizer.lr"]) if "optimizer.lr" in extra else RECIPES[method].lr
                lr = base_lr * scale
                run_extra = extra if scale == 1 else {**extra, "optimizer.lr": f"{lr:.6g}"}
                m = run_method(method, args.epochs, run_extra, Path(tmp) / f"{method}-{scale:g}")
                records.append({"method": method, "lr_scale": scale, **{k: v for k, v in m.items() if k != "epochs"}})
                rows.append(row_for(method, lr, m))
                print(json.dumps(rows[-1]), flush=True)  # a time limit that stops the grid keeps what ran
                if args.json:
                    write_json(args.json, {"machine": machine(device), "shared": SHARED, "epochs": args.epochs, "extra": extra, "results": records})
    print_table(rows, list(rows[0]) if rows else [], title=f"Learning on {device}")
    return 0 if all(r["above both"] == "yes" for r in rows) else 1

if __name__ == "__main__":
    sys.exit(main())
