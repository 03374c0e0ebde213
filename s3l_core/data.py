"""Image datasets as uint8 tensors held in memory.

`load_dataset(name)` returns an `ImageDataset` (`s3l_core/image_dataset.py`): whole train
and test splits as uint8 NCHW tensors, so a trainer can move them to the device once and
make augmented views per batch there (docs/design.md, "Inside one trial"). Files are
parsed in bulk (idx, CIFAR pickles, STL-10 binaries); torchvision is used only to download.

Names: see `DATASET_NAMES`, plus `imagefolder:PATH` (decoded once to a cache by
`s3l_core.imagefolder`).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
from typing import Callable

import numpy as np
import torch

from s3l_core.cache import cache_dir, exclusive_lock
# Names, shapes and the name check live in a torch-free module (fast study validation).
from s3l_core.dataset_catalog import BUILTIN_SHAPES, DATASET_NAMES, IMAGEFOLDER_PREFIX, DatasetShape, check_dataset_name  # noqa: F401 (re-exported)
from s3l_core.image_dataset import DatasetError, ImageDataset
from s3l_core.imagefolder import load_imagefolder
from s3l_core.safe_pickle import load_data_pickle

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SYSTEM_FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
SAMPLE_DATA_DIR = pathlib.Path(__file__).parent / "sample_data"
DIGITS_SPLIT_SEED = 20210325  # fixed so every machine gets the same digits split
DIGITS_TRAIN_FRACTION = 0.8


# ---------------------------------------------------------------- loading


def load_dataset(
    name: str,
    data_dir: str | None = None,
    download: bool = False,
    image_size: int | None = None,
) -> ImageDataset:
    """Load `name` whole into memory.

    Files are looked for in `data_dir`, then $S3L_DATA_DIR, then (Fashion-MNIST) the
    Debian copy, then `cache_dir()`; `download=True` fetches into `cache_dir()` when
    nothing is found. `image_size` sets the one size an imagefolder dataset is cached at
    (its native size for every trial, whatever resolution the trial trains at); built-in
    datasets keep their native size.
    """
    problem = check_dataset_name(name)
    if problem is not None:
        raise DatasetError(problem)
    if data_dir is not None and not pathlib.Path(data_dir).expanduser().is_dir():
        raise DatasetError(f"dataset {name}: data_dir {data_dir} does not exist")
    if name.startswith(IMAGEFOLDER_PREFIX):
        return load_imagefolder(pathlib.Path(name[len(IMAGEFOLDER_PREFIX) :]), image_size, name)
    if name == "digits":
        return load_digits()
    if name == "fashion-mnist-sample":
        return load_idx_dataset(name, SAMPLE_DATA_DIR, FASHION_MNIST_CLASSES)
    return _BUILTIN_LOADERS[name](_search_roots(data_dir), download)


def _search_roots(data_dir: str | None) -> list[pathlib.Path]:
    roots = [data_dir, os.environ.get("S3L_DATA_DIR")]
    return [pathlib.Path(root).expanduser().resolve() for root in roots if root] + [cache_dir()]


def _missing(name: str, looked_in: list[pathlib.Path], wanted: str) -> DatasetError:
    places = ", ".join(str(p) for p in looked_in)
    return DatasetError(
        f"dataset {name}: {wanted} not found in {places}; pass download=True "
        f"(CLI --download / study trial.download: true) or put the files in one of those folders"
    )


def _find_folder(
    roots: list[pathlib.Path], subfolders: tuple[str, ...], has_files: Callable[[pathlib.Path], bool]
) -> pathlib.Path | None:
    for root in roots:
        for candidate in [root / sub for sub in subfolders] + [root]:
            if candidate.is_dir() and has_files(candidate):
                return candidate
    return None


def _download(name: str, fetch: Callable[[pathlib.Path], object]) -> None:
    target = cache_dir()
    try:
        fetch(target)
    except Exception as error:  # network, checksum, disk: one line for the user either way
        message = " ".join(str(error).split())
        raise DatasetError(f"dataset {name}: download into {target} failed: {message}") from error


def _locate_or_download(
    name: str,
    roots: list[pathlib.Path],
    subfolders: tuple[str, ...],
    has_files: Callable[[pathlib.Path], bool],
    download: bool,
    fetch: Callable[[pathlib.Path], object],
    wanted: str,
) -> pathlib.Path:
    folder = _find_folder(roots, subfolders, has_files)
    if folder is not None:
        return folder
    if not download:
        raise _missing(name, roots, wanted)
    with exclusive_lock(cache_dir() / f".{name}.lock"):
        folder = _find_folder([cache_dir()], subfolders, has_files)
        if folder is None:
            _download(name, fetch)
            folder = _find_folder([cache_dir()], subfolders, has_files)
    if folder is None:
        raise _missing(name, [cache_dir()], wanted + " (even after download)")
    return folder


def _to_dataset(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    classes: tuple[str, ...],
) -> ImageDataset:
    def images(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.require(array, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"]))

    def labels(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.require(array, np.int64, ["C_CONTIGUOUS", "WRITEABLE"]))

    return ImageDataset(name, images(train[0]), labels(train[1]), images(test[0]), labels(test[1]), classes)


# ---------------------------------------------------------------- Fashion-MNIST (idx files)


def read_idx(path: pathlib.Path) -> np.ndarray:
    """Parse one idx file (gzipped or not): big-endian header, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not a uint8 idx file (bad magic number)")
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) - header_end != int(np.prod(shape)):
        raise DatasetError(f"{path} is truncated: header says {shape}, file has {len(raw) - header_end} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape)


def find_idx_file(folder: pathlib.Path, stem: str) -> pathlib.Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _has_idx_files(folder: pathlib.Path) -> bool:
    return all(find_idx_file(folder, stem) is not None for stem in FASHION_MNIST_FILES.values())


def load_idx_dataset(name: str, folder: pathlib.Path, classes: tuple[str, ...]) -> ImageDataset:
    """A dataset from the four MNIST-style idx files in `folder`."""
    if not _has_idx_files(folder):
        raise _missing(name, [folder], "the 4 idx files (train-images-idx3-ubyte.gz, ...)")
    arrays = {}
    for key, stem in FASHION_MNIST_FILES.items():
        arrays[key] = read_idx(find_idx_file(folder, stem))  # type: ignore[arg-type]
    return _to_dataset(
        name,
        (arrays["train_images"][:, None], arrays["train_labels"]),
        (arrays["test_images"][:, None], arrays["test_labels"]),
        classes,
    )


def _load_fashion_mnist(roots: list[pathlib.Path], download: bool) -> ImageDataset:
    def fetch(target: pathlib.Path) -> object:
        from torchvision.datasets import FashionMNIST

        return FashionMNIST(str(target), download=True)

    # After the explicit roots, the Debian package's copy, before the download cache.
    roots = roots[:-1] + [SYSTEM_FASHION_MNIST_DIR] + roots[-1:]
    folder = _locate_or_download(
        "fashion-mnist",
        roots,
        ("fashion-mnist", "FashionMNIST/raw"),
        _has_idx_files,
        download,
        fetch,
        "the 4 idx files (train-images-idx3-ubyte.gz, ...)",
    )
    return load_idx_dataset("fashion-mnist", folder, FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------- CIFAR (python pickles)


def _unpickle(path: pathlib.Path) -> dict:
    return load_data_pickle(path)  # restricted: a crafted batch file cannot run code


def _cifar_arrays(batches: list[dict], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([batch["data"] for batch in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([np.asarray(batch[label_key]) for batch in batches])
    return data, labels


CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))


def _load_cifar10(roots: list[pathlib.Path], download: bool) -> ImageDataset:
    def fetch(target: pathlib.Path) -> object:
        from torchvision.datasets import CIFAR10

        return CIFAR10(str(target), download=True)

    required = CIFAR10_TRAIN_FILES + ("test_batch", "batches.meta")
    folder = _locate_or_download(
        "cifar10",
        roots,
        ("cifar-10-batches-py",),
        lambda f: all((f / name).is_file() for name in required),
        download,
        fetch,
        "cifar-10-batches-py/",
    )
    train = _cifar_arrays([_unpickle(folder / name) for name in CIFAR10_TRAIN_FILES], "labels")
    test = _cifar_arrays([_unpickle(folder / "test_batch")], "labels")
    classes = tuple(_unpickle(folder / "batches.meta")["label_names"])
    return _to_dataset("cifar10", train, test, classes)


def _load_cifar100(roots: list[pathlib.Path], download: bool) -> ImageDataset:
    def fetch(target: pathlib.Path) -> object:
        from torchvision.datasets import CIFAR100

        return CIFAR100(str(target), download=True)

    folder = _locate_or_download(
        "cifar100",
        roots,
        ("cifar-100-python",),
        lambda f: all((f / name).is_file() for name in ("train", "test", "meta")),
        download,
        fetch,
        "cifar-100-python/",
    )
    train = _cifar_arrays([_unpickle(folder / "train")], "fine_labels")
    test = _cifar_arrays([_unpickle(folder / "test")], "fine_labels")
    classes = tuple(_unpickle(folder / "meta")["fine_label_names"])
    return _to_dataset("cifar100", train, test, classes)


# ---------------------------------------------------------------- STL-10 (binary files)

STL10_FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin", "class_names.txt")


def _stl10_images(path: pathlib.Path) -> np.ndarray:
    # Stored column-major per channel: (N, C, W, H) in C order, hence the transpose.
    return np.fromfile(path, dtype=np.uint8).reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)


def _stl10_split(folder: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.fromfile(folder / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1
    return _stl10_images(folder / f"{split}_X.bin"), labels


def _load_stl10(roots: list[pathlib.Path], download: bool) -> ImageDataset:
    def fetch(target: pathlib.Path) -> object:
        from torchvision.datasets import STL10

        return STL10(str(target), split="train", download=True)

    folder = _locate_or_download(
        "stl10",
        roots,
        ("stl10_binary",),
        lambda f: all((f / name).is_file() for name in STL10_FILES),
        download,
        fetch,
        "stl10_binary/",
    )
    classes = tuple((folder / "class_names.txt").read_text().split())
    dataset = _to_dataset("stl10", _stl10_split(folder, "train"), _stl10_split(folder, "test"), classes)
    # Pre-training sees train + the 100k unlabelled images, as the SSL literature does on STL-10.
    unlabeled = torch.from_numpy(np.ascontiguousarray(_stl10_images(folder / "unlabeled_X.bin")))
    return dataclasses.replace(dataset, unlabeled_images=unlabeled)


_BUILTIN_LOADERS: dict[str, Callable[[list[pathlib.Path], bool], ImageDataset]] = {
    "fashion-mnist": _load_fashion_mnist,
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
    "stl10": _load_stl10,
}


# ---------------------------------------------------------------- digits (bundled with scikit-learn)


def load_digits() -> ImageDataset:
    """scikit-learn's 8x8 digits, 0..16 scaled to 0..255, split 80/20 per class with a fixed seed."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_index = stratified_subset(labels, DIGITS_TRAIN_FRACTION, DIGITS_SPLIT_SEED)
    is_test = torch.ones(len(labels), dtype=torch.bool)
    is_test[train_index] = False
    test_index = is_test.nonzero().flatten()
    return _to_dataset(
        "digits",
        (images[train_index.numpy()], labels[train_index].numpy()),
        (images[test_index.numpy()], labels[test_index].numpy()),
        tuple(str(c) for c in bunch.target_names),
    )


# ---------------------------------------------------------------- subsets and statistics


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted int64 indices keeping max(1, round(fraction * n_c)) of each class c.

    One CPU generator seeded with `seed` draws a permutation per class in sorted class
    order, so a seed names the same subset on every machine.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = labels.flatten().cpu()
    if fraction == 1.0:
        return torch.arange(len(labels), dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for label in torch.unique(labels, sorted=True):
        members = (labels == label).nonzero().flatten()
        keep = max(1, round(fraction * len(members)))
        kept.append(members[torch.randperm(len(members), generator=generator)[:keep]])
    return torch.sort(torch.cat(kept)).values.to(torch.int64)


VAL_SPLIT_SEED = 20211114  # fixed: every trial and seed of a dataset holds out the same images


def validation_split(labels: torch.Tensor, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices) of a labelled training split: a stratified
    `val_fraction` of each class, the same for every seed, so no seed ever pre-trains on
    another seed's validation images and selection never needs the test split."""
    val = stratified_subset(labels, val_fraction, VAL_SPLIT_SEED)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().flatten(), val


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of uint8 NCHW images, in [0, 1] units."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"channel_stats needs non-empty (N, C, H, W) images, got {tuple(images.shape)}")
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for chunk in torch.split(images, 4096):  # bounded float64 memory on large sets
        values = chunk.to(torch.float64).div_(255.0).transpose(0, 1).reshape(channels, -1)
        total += values.sum(dim=1)
        total_sq += values.square().sum(dim=1)
    count = images.numel() // channels
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0.0).sqrt()
    return mean.tolist(), std.tolist()
