"""What is known of each dataset without loading it: names, shapes, and the name check.

Kept free of torch and numpy so that validating a study (and `s3l-sweep --help`) starts in
well under a second; `s3l_core.data` loads the datasets named here.
"""

from __future__ import annotations

import difflib
import pathlib
from dataclasses import dataclass

from s3l_core.quoting import brief


@dataclass(frozen=True)
class DatasetShape:
    """What is known of a built-in dataset without loading it (for cost estimates and validation)."""

    train_images: int
    channels: int
    native_size: int
    num_classes: int
    test_images: int = 0  # the evaluation split; sized so the cost model can count evaluation FLOPs
    unlabeled_images: int = 0  # pre-training only (STL-10)


BUILTIN_SHAPES: dict[str, DatasetShape] = {
    "fashion-mnist": DatasetShape(60000, 1, 28, 10, 10000),
    "fashion-mnist-sample": DatasetShape(10000, 1, 28, 10, 2000),
    "cifar10": DatasetShape(50000, 3, 32, 10, 10000),
    "cifar100": DatasetShape(50000, 3, 32, 100, 10000),
    "stl10": DatasetShape(5000, 3, 96, 10, 8000, 100000),
    "digits": DatasetShape(1438, 1, 8, 10, 359),
}
DATASET_NAMES: tuple[str, ...] = tuple(BUILTIN_SHAPES)
IMAGEFOLDER_PREFIX = "imagefolder:"
DEFAULT_IMAGE_SIZE = 96  # an imagefolder's cache size: STL-10's, large enough for 64 px arms, small enough to hold in memory


def assumed_native_size(dataset: str, image_size: int | None = None) -> int:
    """The side a dataset's images come at, without reading a file (an imagefolder's cache size:
    `image_size`, else the default; its loader may pick the images' own square size instead)."""
    if dataset.startswith(IMAGEFOLDER_PREFIX):
        return image_size or DEFAULT_IMAGE_SIZE
    return BUILTIN_SHAPES[dataset].native_size
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})


def anchored_dataset_name(name: str, base_dir: pathlib.Path) -> str:
    """`name` with a relative `imagefolder:` path made absolute against `base_dir` (a study
    file's folder), so every Ray worker finds the same folder whatever its working directory."""
    if not name.startswith(IMAGEFOLDER_PREFIX):
        return name
    path = pathlib.Path(name[len(IMAGEFOLDER_PREFIX) :]).expanduser()
    if not str(path) or path.is_absolute():
        return name
    return IMAGEFOLDER_PREFIX + str((base_dir / path).resolve())


def check_dataset_name(name: str) -> str | None:
    """None if `name` is a known dataset (or an existing imagefolder path), else the problem."""
    if name.startswith(IMAGEFOLDER_PREFIX):
        path = name[len(IMAGEFOLDER_PREFIX) :]
        if not path:
            return f"dataset {brief(name)} names no folder; write imagefolder:/path/with/train_and_val"
        if not pathlib.Path(path).expanduser().is_dir():
            return f"dataset {brief(name)}: folder {path} does not exist"
        return None
    if name in DATASET_NAMES:
        return None
    close = difflib.get_close_matches(name, DATASET_NAMES + (IMAGEFOLDER_PREFIX + "PATH",), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown dataset {brief(name)}; {hint}known: {', '.join(DATASET_NAMES)}, imagefolder:PATH"


def imagefolder_class_problem(root: pathlib.Path) -> str | None:
    """Why an imagefolder's train/ cannot train a classifier (fewer than two classes, a class
    without images), or None; counts folders and stops at each class's first image, so it is
    cheap enough for study validation on the driver."""
    train = root / "train"
    if not train.is_dir():
        return f"has no train/ folder at {train}"
    classes = sorted(entry for entry in train.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if len(classes) < 2:
        return f"{train} has {len(classes)} class folder{'s' if len(classes) != 1 else ''}; at least 2 are needed"

    def has_image(folder: pathlib.Path) -> bool:
        return any(f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file() for f in folder.rglob("*"))

    empty = [c.name for c in classes if not has_image(c)]
    return f"{train} has class folders without images: {', '.join(empty)}" if empty else None
