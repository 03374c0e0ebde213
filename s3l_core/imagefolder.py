"""`imagefolder:PATH` datasets: PATH/train/<class>/<image> and PATH/val/<class>/<image>.

Images are decoded once, resized (shorter side) and center-cropped to one square
size, and cached as uint8 tensors under `cache_dir()/imagefolder/`. That size belongs to the
dataset, not to a trial: the images' own size when they are all one square size, else
`DEFAULT_IMAGE_SIZE`, or the trial config's `image_size`. Every arm of a study then crops
its views from, and is evaluated on, the same images. The cache key covers the folder, every
file's path, size and mtime, and the size, so editing the folder rebuilds the cache and a
second load decodes nothing.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from s3l_core.atomic import atomic_file
from s3l_core.cache import cache_dir, exclusive_lock
from s3l_core.dataset_catalog import IMAGE_SUFFIXES  # one list, shared with study validation
from s3l_core.image_dataset import DatasetError, ImageDataset

GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
from s3l_core.dataset_catalog import DEFAULT_IMAGE_SIZE  # noqa: E402,F401 (one default for the loader and the cost model)
CACHE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ImageFile:
    path: pathlib.Path
    label: int


@dataclass(frozen=True)
class ImageHeader:
    mode: str
    width: int
    height: int


def load_imagefolder(root: pathlib.Path, image_size: int | None, name: str | None = None) -> ImageDataset:
    """Load PATH/train and PATH/val (as the test split), from the cache when it is current."""
    root = root.expanduser().resolve()
    name = name or f"imagefolder:{root}"
    classes, train_files, val_files = list_imagefolder(root, name)
    cache_path = cache_dir() / "imagefolder" / f"{cache_key(root, train_files + val_files, image_size)}.pt"
    cached = _read_cache(cache_path, name)
    if cached is not None:
        return cached
    with exclusive_lock(cache_path.with_suffix(".lock")):
        cached = _read_cache(cache_path, name)  # another process may have built it meanwhile
        if cached is not None:
            return cached
        dataset = _decode_dataset(name, classes, train_files, val_files, image_size)
        _write_cache(cache_path, dataset)
    return dataset


def list_imagefolder(root: pathlib.Path, name: str) -> tuple[tuple[str, ...], list[ImageFile], list[ImageFile]]:
    """Classes (sorted train/ subfolders) and the image files of train/ and val/."""
    layout = "expected PATH/train/<class>/<image> and PATH/val/<class>/<image>"
    split_dirs = {split: root / split for split in ("train", "val")}
    for split, folder in split_dirs.items():
        if not folder.is_dir():
            raise DatasetError(f"dataset {name}: no {split}/ folder at {folder}; {layout}")
    classes = _class_names(split_dirs["train"])
    if not classes:
        raise DatasetError(f"dataset {name}: {split_dirs['train']} has no class subfolders; {layout}")
    unknown = sorted(set(_class_names(split_dirs["val"])) - set(classes))
    if unknown:
        raise DatasetError(f"dataset {name}: val/ has classes not in train/: {', '.join(unknown)}")
    train_files = _image_files(split_dirs["train"], classes, classes)
    val_files = _image_files(split_dirs["val"], _class_names(split_dirs["val"]), classes)
    counts = np.bincount([f.label for f in train_files], minlength=len(classes))
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        raise DatasetError(f"dataset {name}: train/ classes without images: {', '.join(empty)}")
    if not val_files:
        raise DatasetError(f"dataset {name}: {split_dirs['val']} has no images")
    return classes, train_files, val_files


def split_sizes(root: pathlib.Path) -> tuple[int, int, int]:
    """(train images, val images, classes), counted as `list_imagefolder` lists them but without
    its checks: a missing folder counts 0 (study validation is what reports it)."""
    train, val = root / "train", root / "val"
    classes = _class_names(train) if train.is_dir() else ()
    val_classes = tuple(c for c in _class_names(val) if c in classes) if val.is_dir() else ()
    return len(_image_files(train, classes, classes)), len(_image_files(val, val_classes, classes)), len(classes)


def _class_names(folder: pathlib.Path) -> tuple[str, ...]:
    return tuple(sorted(e.name for e in folder.iterdir() if e.is_dir() and not e.name.startswith(".")))


def _image_files(split_dir: pathlib.Path, present: tuple[str, ...], classes: tuple[str, ...]) -> list[ImageFile]:
    files = []
    for class_name in present:
        label = classes.index(class_name)
        for path in sorted((split_dir / class_name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
                files.append(ImageFile(path, label))
    return files


def cache_key(root: pathlib.Path, files: list[ImageFile], image_size: int | None) -> str:
    digest = hashlib.sha256(f"v{CACHE_FORMAT_VERSION}\n{root}\n{image_size}\n".encode())
    for image in files:
        stat = image.path.stat()
        digest.update(f"{image.path.relative_to(root)}\t{stat.st_size}\t{stat.st_mtime_ns}\t{image.label}\n".encode())
    return digest.hexdigest()[:32]


# ---------------------------------------------------------------- decoding


def read_header(path: pathlib.Path) -> ImageHeader:
    """Mode and size without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return ImageHeader(image.mode, image.width, image.height)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"cannot read image {path}: {error}") from error


def decode_image(path: pathlib.Path, size: int, grayscale: bool) -> np.ndarray:
    """(size, size) or (size, size, 3) uint8: shorter side resized to `size`, then center-cropped."""
    try:
        with Image.open(path) as image:
            image.draft("L" if grayscale else "RGB", (size, size))  # JPEG: decode at reduced scale, >= size
            image = image.convert("L" if grayscale else "RGB")
            return np.asarray(resize_and_center_crop(image, size))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"cannot decode image {path}: {error}") from error


def resize_and_center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), Image.Resampling.BICUBIC)
    left, top = (new_width - size) // 2, (new_height - size) // 2
    return image.crop((left, top, left + size, top + size))


def _decode_dataset(
    name: str,
    classes: tuple[str, ...],
    train_files: list[ImageFile],
    val_files: list[ImageFile],
    image_size: int | None,
) -> ImageDataset:
    files = train_files + val_files
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # PIL releases the GIL
        headers = list(pool.map(lambda f: read_header(f.path), files))
        grayscale = all(h.mode in GRAYSCALE_MODES for h in headers)
        size = image_size or _native_square_size(headers) or DEFAULT_IMAGE_SIZE
        images = np.empty((len(files), 1 if grayscale else 3, size, size), dtype=np.uint8)

        def decode_into(index: int) -> None:
            pixels = decode_image(files[index].path, size, grayscale)
            images[index] = pixels[None] if grayscale else pixels.transpose(2, 0, 1)

        list(pool.map(decode_into, range(len(files))))
    labels = torch.tensor([f.label for f in files], dtype=torch.int64)
    tensor = torch.from_numpy(images)
    n_train = len(train_files)
    return ImageDataset(
        name, tensor[:n_train].clone(), labels[:n_train], tensor[n_train:].clone(), labels[n_train:], classes
    )


def _native_square_size(headers: list[ImageHeader]) -> int | None:
    sizes = {(h.width, h.height) for h in headers}
    if len(sizes) == 1:
        width, height = sizes.pop()
        if width == height:
            return width
    return None


# ---------------------------------------------------------------- cache file


def _read_cache(path: pathlib.Path, name: str) -> ImageDataset | None:
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return ImageDataset(
            name,
            saved["train_images"],
            saved["train_labels"],
            saved["test_images"],
            saved["test_labels"],
            tuple(saved["classes"]),
        )
    except Exception:  # unreadable or from another format version: rebuild it
        return None


def _write_cache(path: pathlib.Path, dataset: ImageDataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    contents = {
        "train_images": dataset.train_images,
        "train_labels": dataset.train_labels,
        "test_images": dataset.test_images,
        "test_labels": dataset.test_labels,
        "classes": list(dataset.classes),
    }
    with atomic_file(path) as handle:
        torch.save(contents, handle)
