"""One table from the JSON files that bench/gpu.sh writes, each issue-5 GPU target marked.

    python -m bench summary --dir OUT [--wall-s SECONDS]
    python -m bench summary --choose-epochs OUT/throughput_eager.json --budget-s 170

`--choose-epochs` prints the Fashion-MNIST epoch count gpu.sh uses: as many epochs as
fit `--budget-s` at the s3l_core rate measured at 32 px (at most 100, at least 10), each
epoch 60,000 images plus ~10% for the kNN evaluations every 10 epochs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from bench.common import print_table

FMNIST_TRAIN_IMAGES = 60_000
EVAL_SHARE = 0.10
MAX_EPOCHS, MIN_EPOCHS = 100, 10
KNN_TARGET = 0.90
WALL_TARGET_S = 480


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _rate(doc: dict[str, Any] | None, resolution: int, pipeline: str) -> float | None:
    for row in (doc or {}).get("rows", []):
        if row["resolution"] == resolution and row["pipeline"].split(" ")[0] == pipeline:
            return row["img/s"]
    return None


def choose_epochs(throughput_json: Path, budget_s: float, lo: int = MIN_EPOCHS, hi: int = MAX_EPOCHS) -> tuple[int, str]:
    doc = _load(throughput_json)
    rate = _rate(doc, 32, "trainer") or _rate(doc, 32, "s3l")
    if not rate:
        return lo, f"no 32 px throughput measured; {lo} epochs"
    fit = math.floor(budget_s * rate / (FMNIST_TRAIN_IMAGES * (1 + EVAL_SHARE)))
    epochs = max(lo, min(hi, fit))
    return epochs, f"{rate:,.0f} img/s at 32 px x {budget_s:.0f} s budget / ({FMNIST_TRAIN_IMAGES} images x {1 + EVAL_SHARE:.2f}) = {fit} -> {epochs} epochs"


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "missed")


def summarise(directory: Path, wall_s: float | None, smoke: bool = False) -> list[dict[str, Any]]:
    eager = _load(directory / "throughput_eager.json")
    compiled = _load(directory / "throughput_compile.json")
    packing = _load(directory / "packing.json")
    fmnist = _load(directory / "fmnist_metrics.json")
    rows: list[dict[str, Any]] = []

    def add(figure: str, value: Any, target: str = "", ok: bool | None = None, verdict: str | None = None) -> None:
        if smoke and target:
            verdict = "smoke run: not a measurement"
        rows.append({"figure": figure, "value": value, "target": target, "verdict": verdict or (_verdict(ok) if target else "")})

    machine = (eager or compiled or packing or {}).get("machine")
    add("machine", machine or "unknown")
    for doc, tag in ((eager, "eager"), (compiled, "compile")):
        for row in (doc or {}).get("rows", []):
            peak = row.get("% bf16 peak")
            extra = f", {row['TFLOP/s']:.1f} TFLOP/s" + (f" ({peak:.1f}% bf16 peak)" if peak else "")
            warm = f", warm-up {row['warm-up s']:.0f} s" if tag == "compile" else ""
            add(f"{row['resolution']} px {row['pipeline']} [{tag}] img/s", f"{row['img/s']:,.0f}{extra}{warm}")
    s3l32 = _rate(eager, 32, "s3l")
    trainer32 = _rate(eager, 32, "trainer")
    ceiling32 = _rate(eager, 32, "model")
    peer32 = _rate(eager, 32, "peer")
    end_to_end = trainer32 or s3l32  # train() itself when measured, else the bench's copy of its loop
    if end_to_end and ceiling32:
        both = f"train() {trainer32 / ceiling32:.2f}" if trainer32 else ""
        both += (", " if both and s3l32 else "") + (f"s3l loop {s3l32 / ceiling32:.2f}" if s3l32 else "")
        add("32 px s3l_core end to end / model-only ceiling (eager)", both, ">= 0.90", end_to_end / ceiling32 >= 0.90)
    else:
        add("32 px s3l_core end to end / model-only ceiling (eager)", None, ">= 0.90", None)
    if end_to_end and peer32:
        add("32 px s3l_core end to end / peer DataLoader", f"{end_to_end / peer32:.1f}x", ">= 4x", end_to_end / peer32 >= 4)
    else:
        add("32 px s3l_core end to end / peer DataLoader", None, ">= 4x", None)
    s3l32c = _rate(compiled, 32, "s3l")
    if s3l32c and ceiling32:
        add("32 px s3l_core compiled / eager ceiling", f"{s3l32c / ceiling32:.2f}", "> 1.0", s3l32c > ceiling32)
    else:
        add("32 px s3l_core compiled / eager ceiling", None, "> 1.0", None)
    skipped = (packing or {}).get("skipped")
    for k, need in ((4, 3.5), (8, 5.0)):
        row = next((r for r in (packing or {}).get("rows", []) if r["trials"] == k), None)
        value = f"{row['x one trial']:.2f}x ({row['aggregate img/s']:,.0f} img/s)" if row else (f"skipped: {skipped}" if skipped else None)
        add(f"packing: {k} trials at 16 px vs one", value, f">= {need}x", row["x one trial"] >= need if row else None)
    if fmnist:
        knn = fmnist.get("knn_top1")
        config = fmnist.get("config", {})
        value = (
            f"kNN {knn:.4f} (best {fmnist.get('knn_top1_best', float('nan')):.4f}), linear {fmnist.get('linear_top1') or float('nan'):.4f}, "
            f"{config.get('epochs')} epochs, crops from {config.get('augment', {}).get('min_scale') or 'the preset'}, "
            f"{fmnist.get('wall_s', 0):.0f} s, {fmnist.get('img_per_s', 0):,.0f} img/s"
        )
        add("Fashion-MNIST SimCLR R18 w1.0 28 px", value, f"kNN >= {KNN_TARGET}", knn is not None and knn >= KNN_TARGET)
    else:
        add("Fashion-MNIST SimCLR R18 w1.0 28 px", "not run (no .device/fashion-mnist idx files, or it failed)", f"kNN >= {KNN_TARGET}", None)
    if wall_s is not None:
        add("bench/gpu.sh wall time", f"{wall_s:.0f} s", f"< {WALL_TARGET_S} s", wall_s < WALL_TARGET_S)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench summary", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="the folder gpu.sh wrote its JSON files to")
    parser.add_argument("--wall-s", type=float)
    parser.add_argument("--smoke", action="store_true", help="the files come from gpu.sh --cpu-smoke: mark no target")
    parser.add_argument("--choose-epochs", type=Path, metavar="THROUGHPUT_JSON")
    parser.add_argument("--budget-s", type=float, default=170.0)
    parser.add_argument("--min-epochs", type=int, default=MIN_EPOCHS)
    parser.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    args = parser.parse_args(argv)
    if args.choose_epochs:
        epochs, why = choose_epochs(args.choose_epochs, args.budget_s, args.min_epochs, args.max_epochs)
        print(why, file=sys.stderr)
        print(epochs)
        return 0
    if not args.dir:
        parser.error("--dir or --choose-epochs is required")
    rows = summarise(args.dir, args.wall_s, args.smoke)
    text = print_table(rows, ["figure", "value", "target", "verdict"], title="## bench/gpu.sh summary")
    args.dir.mkdir(parents=True, exist_ok=True)
    (args.dir / "summary.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
