"""Build the shipped `fashion-mnist-sample` dataset from the original Fashion-MNIST files.

    python scripts/build_sample.py [--source /usr/share/datasets/fashion-mnist]

Writes s3l_core/sample_data/: a seeded stratified subset (1000 train images and 200 test
images per class) as the four idx .gz files, and the MIT licence notice. Reproducible:
the same source files and seed give byte-identical output (gzip mtime fixed to 0).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import pathlib
import sys

import numpy as np
import torch

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from s3l_core.data import (  # noqa: E402
    FASHION_MNIST_FILES,
    SAMPLE_DATA_DIR,
    SYSTEM_FASHION_MNIST_DIR,
    find_idx_file,
    read_idx,
    stratified_subset,
)

SEED = 0
TRAIN_PER_CLASS = 1000
TEST_PER_CLASS = 200

LICENSE_TEXT = """\
The files in this folder are a subset of Fashion-MNIST.

Source: Fashion-MNIST, https://github.com/zalandoresearch/fashion-mnist
(Xiao, Rasul, Vollgraf, 2017, arXiv:1708.07747).
Subset: built by scripts/build_sample.py with torch.Generator seed {seed}: a stratified
random choice of {train_per_class} images per class from the 60000 training images and
{test_per_class} per class from the 10000 test images, kept in original order, written
in the original idx format. Source files (sha256):
{checksums}

The MIT License (MIT)

Copyright (c) 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of a uint8 array: magic (0, 0, 0x08, ndim), big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_gzip(path: pathlib.Path, data: bytes) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
        f.write(data)


def per_class_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    counts = np.bincount(labels)
    if len(set(counts.tolist())) != 1:
        raise SystemExit(f"expected balanced classes, got counts {counts.tolist()}")
    index = stratified_subset(torch.from_numpy(labels.astype(np.int64)), per_class / counts[0], seed).numpy()
    if not (np.bincount(labels[index]) == per_class).all():
        raise SystemExit(f"subset is not {per_class} per class: {np.bincount(labels[index]).tolist()}")
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=pathlib.Path, default=SYSTEM_FASHION_MNIST_DIR)
    parser.add_argument("--out", type=pathlib.Path, default=SAMPLE_DATA_DIR)
    args = parser.parse_args()

    sources = {key: find_idx_file(args.source, stem) for key, stem in FASHION_MNIST_FILES.items()}
    missing = [FASHION_MNIST_FILES[key] for key, path in sources.items() if path is None]
    if missing:
        raise SystemExit(f"{args.source} lacks {', '.join(missing)} (apt install dataset-fashion-mnist)")
    arrays = {key: read_idx(path) for key, path in sources.items()}  # type: ignore[arg-type]
    kept = {
        "train": per_class_subset(arrays["train_labels"], TRAIN_PER_CLASS, SEED),
        "test": per_class_subset(arrays["test_labels"], TEST_PER_CLASS, SEED),
    }

    args.out.mkdir(parents=True, exist_ok=True)
    for key, stem in FASHION_MNIST_FILES.items():
        split = key.split("_")[0]
        write_gzip(args.out / f"{stem}.gz", idx_bytes(arrays[key][kept[split]]))
    checksums = "\n".join(
        f"  {hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}"  # type: ignore[union-attr]
        for path in sources.values()
    )
    (args.out / "LICENSE-fashion-mnist.txt").write_text(
        LICENSE_TEXT.format(
            seed=SEED, train_per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS, checksums=checksums
        )
    )
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({total / 1e6:.1f} MB): {len(kept['train'])} train, {len(kept['test'])} test images")


if __name__ == "__main__":
    main()
