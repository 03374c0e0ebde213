"""Tests for s3l_core.data and s3l_core.imagefolder (CPU, no downloads)."""

from __future__ import annotations

import gzip
import pathlib
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from s3l_core import data, imagefolder
from s3l_core.data import (
    DATASET_NAMES,
    channel_stats,
    check_dataset_name,
    load_dataset,
    stratified_subset,
)
from s3l_core.image_dataset import DatasetError

SYSTEM_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("S3L_CACHE_DIR", str(cache))
    monkeypatch.delenv("S3L_DATA_DIR", raising=False)
    return cache


def write_idx_gz(path: pathlib.Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_tiny_fashion_mnist(folder: pathlib.Path, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx_gz(folder / f"{stem}.gz", array)
    return arrays


# ---------------------------------------------------------------- Fashion-MNIST


def test_sample_loads_balanced_with_ten_classes() -> None:
    sample = load_dataset("fashion-mnist-sample")
    assert sample.train_images.shape == (10_000, 1, 28, 28)
    assert sample.test_images.shape == (2_000, 1, 28, 28)
    assert sample.train_images.dtype == torch.uint8 and sample.train_images.is_contiguous()
    assert sample.train_labels.dtype == torch.int64 and sample.test_labels.dtype == torch.int64
    assert (sample.channels, sample.native_size, sample.num_classes) == (1, 28, 10)
    assert sample.classes[0] == "T-shirt/top" and sample.classes[-1] == "Ankle boot"
    assert torch.bincount(sample.train_labels).tolist() == [1000] * 10
    assert torch.bincount(sample.test_labels).tolist() == [200] * 10
    assert 0.2 < sample.train_images.float().mean().item() / 255 < 0.4  # real clothing, not noise or blank


def test_sample_licence_is_shipped() -> None:
    notice = (data.SAMPLE_DATA_DIR / "LICENSE-fashion-mnist.txt").read_text()
    assert "Copyright (c) 2017 Zalando SE" in notice and "MIT" in notice
    assert "scripts/build_sample.py" in notice


@pytest.mark.skipif(not SYSTEM_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_full_fashion_mnist_from_system_dir_and_sample_is_its_seeded_subset() -> None:
    full = load_dataset("fashion-mnist")
    assert full.train_images.shape == (60_000, 1, 28, 28)
    assert full.test_images.shape == (10_000, 1, 28, 28)
    assert torch.bincount(full.train_labels).tolist() == [6000] * 10

    # The shipped sample is exactly what scripts/build_sample.py (seed 0) selects.
    sample = load_dataset("fashion-mnist-sample")
    train_index = stratified_subset(full.train_labels, 1000 / 6000, seed=0)
    test_index = stratified_subset(full.test_labels, 200 / 1000, seed=0)
    assert torch.equal(sample.train_images, full.train_images[train_index])
    assert torch.equal(sample.train_labels, full.train_labels[train_index])
    assert torch.equal(sample.test_images, full.test_images[test_index])


def test_data_dir_takes_precedence_over_system_copy(tmp_path: pathlib.Path) -> None:
    arrays = write_tiny_fashion_mnist(tmp_path / "mine")
    tiny = load_dataset("fashion-mnist", data_dir=str(tmp_path / "mine"))
    assert tiny.train_images.shape == (20, 1, 28, 28) and tiny.test_images.shape == (10, 1, 28, 28)
    assert np.array_equal(tiny.train_images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert tiny.test_labels.tolist() == list(range(10))


def test_s3l_data_dir_env_is_searched(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tiny_fashion_mnist(tmp_path / "shared" / "fashion-mnist", n_train=30)
    monkeypatch.setenv("S3L_DATA_DIR", str(tmp_path / "shared"))
    assert load_dataset("fashion-mnist").train_images.shape[0] == 30


def test_truncated_idx_file_is_reported(tmp_path: pathlib.Path) -> None:
    write_tiny_fashion_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))


# ---------------------------------------------------------------- missing data


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10"])
def test_missing_dataset_error_names_where_it_looked(name: str, tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as caught:
        load_dataset(name, data_dir=str(empty))
    message = str(caught.value)
    assert name in message and str(empty) in message and str(tmp_path / "cache") in message
    assert "download=True" in message and "\n" not in message
    assert not (tmp_path / "cache" / "cifar-10-batches-py").exists()  # nothing was downloaded


def test_nonexistent_data_dir_is_named(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DatasetError, match=str(tmp_path / "typo")):
        load_dataset("fashion-mnist", data_dir=str(tmp_path / "typo"))


# ---------------------------------------------------------------- CIFAR and STL-10 file formats


def cifar_batch(images: np.ndarray, labels: list[int], label_key: str) -> dict:
    return {"data": images.reshape(len(images), -1), label_key: labels}


def test_cifar10_pickles_are_parsed(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8) for _ in range(6)]
    for i, images in enumerate(batches[:5], start=1):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(cifar_batch(images, [i, i, 0, 9], "labels"), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(cifar_batch(batches[5], [3, 3, 3, 3], "labels"), f)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)

    cifar = load_dataset("cifar10", data_dir=str(tmp_path))
    assert cifar.train_images.shape == (20, 3, 32, 32) and cifar.test_images.shape == (4, 3, 32, 32)
    assert torch.equal(cifar.train_images[4:8], torch.from_numpy(batches[1]))  # R, G, B planes in order
    assert cifar.train_labels[:4].tolist() == [1, 1, 0, 9] and cifar.test_labels.tolist() == [3] * 4
    assert cifar.classes == tuple(names)


def test_cifar100_pickles_are_parsed(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images = np.random.default_rng(2).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    for split, count in (("train", 5), ("test", 2)):
        with open(folder / split, "wb") as f:
            batch = cifar_batch(images[:count], list(range(count)), "fine_labels")
            pickle.dump(batch | {"coarse_labels": [0] * count}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)

    cifar = load_dataset("cifar100", data_dir=str(folder))  # the batches folder itself also works
    assert torch.equal(cifar.train_images, torch.from_numpy(images))
    assert cifar.test_labels.tolist() == [0, 1] and cifar.num_classes == 100


def test_stl10_column_major_binaries_are_parsed(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(3)
    splits = {split: rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8) for split, n in (("train", 3), ("test", 2), ("unlabeled", 4))}
    for split, images in splits.items():
        # STL-10 stores each channel column-major.
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes(bytes([1, 10, 5][: len(images)]))
    (folder / "class_names.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")

    stl = load_dataset("stl10", data_dir=str(tmp_path))
    assert torch.equal(stl.train_images, torch.from_numpy(splits["train"]))
    assert torch.equal(stl.test_images, torch.from_numpy(splits["test"]))
    # the 100k unlabelled images pre-train too, as in the SSL literature
    assert torch.equal(stl.unlabeled_images, torch.from_numpy(splits["unlabeled"]))
    assert stl.train_labels.tolist() == [0, 9, 4] and stl.native_size == 96 and stl.num_classes == 10


# ---------------------------------------------------------------- digits


def test_digits_split_is_stratified_and_fixed() -> None:
    digits = load_dataset("digits")
    assert digits.train_images.shape[1:] == (1, 8, 8)
    assert digits.train_images.shape[0] + digits.test_images.shape[0] == 1797
    assert digits.train_images.max().item() == 255 and digits.train_images.min().item() == 0
    totals = torch.bincount(digits.train_labels) + torch.bincount(digits.test_labels)
    assert torch.bincount(digits.train_labels).tolist() == [round(0.8 * int(n)) for n in totals]
    again = load_dataset("digits")
    assert torch.equal(digits.train_images, again.train_images) and torch.equal(digits.test_labels, again.test_labels)


# ---------------------------------------------------------------- subsets and statistics


def test_stratified_subset_keeps_proportions_and_every_class() -> None:
    labels = torch.tensor([0] * 100 + [1] * 10 + [2] * 1 + [3] * 45)
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    index = stratified_subset(labels, 0.1, seed=7)
    assert index.dtype == torch.int64
    assert torch.equal(index, torch.sort(index).values) and len(index.unique()) == len(index)
    assert torch.bincount(labels[index]).tolist() == [10, 1, 1, 4]  # round(4.5) = 4; the singleton class stays


def test_stratified_subset_is_deterministic_per_seed() -> None:
    labels = torch.arange(1000) % 10
    first = stratified_subset(labels, 0.3, seed=1)
    assert torch.equal(first, stratified_subset(labels, 0.3, seed=1))
    assert not torch.equal(first, stratified_subset(labels, 0.3, seed=2))
    assert torch.equal(stratified_subset(labels, 1.0, seed=5), torch.arange(1000))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_stratified_subset_rejects_fractions_outside_unit_interval(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        stratified_subset(torch.arange(10), fraction, seed=0)


def test_channel_stats_matches_direct_computation() -> None:
    images = torch.randint(0, 256, (50, 3, 6, 6), dtype=torch.uint8)
    mean, std = channel_stats(images)
    as_float = images.double() / 255
    assert mean == pytest.approx(as_float.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert std == pytest.approx(as_float.std(dim=(0, 2, 3), correction=0).tolist(), abs=1e-9)
    constant = torch.full((2, 1, 4, 4), 51, dtype=torch.uint8)
    assert channel_stats(constant) == ([pytest.approx(0.2)], [pytest.approx(0.0)])


# ---------------------------------------------------------------- names


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(DatasetError, match="did you mean 'cifar10'"):
        load_dataset("cifar-10")
    assert "fashion-mnist" in (check_dataset_name("fashion_mnist") or "")
    assert all(check_dataset_name(name) is None for name in DATASET_NAMES)


def test_imagefolder_name_checks_the_path(tmp_path: pathlib.Path) -> None:
    assert check_dataset_name(f"imagefolder:{tmp_path}") is None
    assert str(tmp_path / "nope") in (check_dataset_name(f"imagefolder:{tmp_path / 'nope'}") or "")
    assert check_dataset_name("imagefolder:") is not None


# ---------------------------------------------------------------- imagefolder

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 160, 0)


def solid(color: tuple[int, int, int], size: tuple[int, int] = (24, 24)) -> Image.Image:
    return Image.new("RGB", size, color)


def write_tree(root: pathlib.Path, images: dict[str, Image.Image]) -> None:
    for relative, image in images.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)


def halves(left: tuple[int, int, int], right: tuple[int, int, int], size: tuple[int, int]) -> Image.Image:
    image = solid(left, size)
    image.paste(solid(right, (size[0] // 2, size[1])), (size[0] // 2, 0))
    return image


@pytest.fixture
def colour_tree(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "shapes"
    write_tree(
        root,
        {
            "train/red/a.png": solid(RED),
            "train/red/b.jpg": solid(RED, (40, 30)),
            "train/red/nested/c.PNG": solid(RED, (30, 40)),
            "train/split/wide.png": halves(RED, BLUE, (80, 40)),
            "train/green/g.jpeg": solid(GREEN),
            "train/green/g.bmp": solid(GREEN),
            "train/green/g.webp": solid(GREEN),
            "val/green/v.png": solid(GREEN),
            "val/red/v.jpg": solid(RED),
        },
    )
    (root / "train/red/notes.txt").write_text("not an image: skipped by suffix")
    return root


def test_imagefolder_decodes_resizes_and_labels(colour_tree: pathlib.Path) -> None:
    folder = load_dataset(f"imagefolder:{colour_tree}", image_size=16)
    assert folder.classes == ("green", "red", "split")
    assert folder.train_images.shape == (7, 3, 16, 16) and folder.test_images.shape == (2, 3, 16, 16)
    assert folder.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2]  # class order, then sorted paths
    assert folder.test_labels.tolist() == [0, 1]
    red_png = folder.train_images[3]
    assert red_png[:, 8, 8].tolist() == list(RED)
    red_jpeg = folder.train_images[4].int()
    assert (red_jpeg[0] > 230).all() and (red_jpeg[1:] < 25).all()
    # 80x40 -> 32x16 -> center 16x16 crop: red on the left, blue on the right.
    wide = folder.train_images[6]
    assert wide[:, 8, 0].tolist() == list(RED) and wide[:, 8, 15].tolist() == list(BLUE)


def test_imagefolder_second_load_is_served_from_cache(
    colour_tree: pathlib.Path, isolated_cache: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_dataset(f"imagefolder:{colour_tree}", image_size=12)
    cached = list((isolated_cache / "imagefolder").glob("*.pt"))
    assert len(cached) == 1

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded although the cache is current")

    monkeypatch.setattr(imagefolder, "decode_image", no_decoding)
    monkeypatch.setattr(imagefolder, "read_header", no_decoding)
    second = load_dataset(f"imagefolder:{colour_tree}", image_size=12)
    assert torch.equal(first.train_images, second.train_images) and first.classes == second.classes

    solid(BLUE).save(colour_tree / "train/red/new.png")  # a changed folder must be decoded again
    with pytest.raises(AssertionError, match="decoded although"):
        load_dataset(f"imagefolder:{colour_tree}", image_size=12)


def test_imagefolder_grayscale_and_native_size(tmp_path: pathlib.Path) -> None:
    gray = Image.new("L", (12, 12), 77)
    write_tree(tmp_path / "g", {"train/a/1.png": gray, "train/b/2.png": gray, "val/a/3.png": gray})
    folder = load_dataset(f"imagefolder:{tmp_path / 'g'}")
    assert folder.train_images.shape == (2, 1, 12, 12) and (folder.train_images == 77).all()

    write_tree(tmp_path / "m", {"train/a/1.png": gray, "train/b/2.png": solid(RED, (12, 12)), "val/a/3.png": gray})
    mixed = load_dataset(f"imagefolder:{tmp_path / 'm'}")
    assert mixed.channels == 3 and mixed.native_size == 12
    assert mixed.train_images[0, :, 0, 0].tolist() == [77, 77, 77]

    write_tree(tmp_path / "r", {"train/a/1.png": solid(RED, (20, 10)), "val/a/2.png": solid(RED)})
    assert load_dataset(f"imagefolder:{tmp_path / 'r'}").native_size == imagefolder.DEFAULT_IMAGE_SIZE


@pytest.mark.parametrize("corruption", ["not an image at all", "truncated"])
def test_imagefolder_corrupt_image_is_named(colour_tree: pathlib.Path, corruption: str) -> None:
    bad = colour_tree / "train/green/bad.png"
    if corruption == "truncated":
        solid(GREEN, (64, 64)).save(bad)
        bad.write_bytes(bad.read_bytes()[:60])
    else:
        bad.write_bytes(b"this is text, not a PNG")
    with pytest.raises(DatasetError, match="bad.png"):
        load_dataset(f"imagefolder:{colour_tree}", image_size=8)


def test_imagefolder_layout_errors(colour_tree: pathlib.Path, tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "no_train"
    (empty / "val").mkdir(parents=True)
    with pytest.raises(DatasetError, match=str(empty / "train")):
        load_dataset(f"imagefolder:{empty}")

    write_tree(colour_tree, {"val/purple/p.png": solid(BLUE)})
    with pytest.raises(DatasetError, match="purple"):
        load_dataset(f"imagefolder:{colour_tree}")


@pytest.mark.parametrize("name", ["fashion-mnist-sample", "digits", "fashion-mnist"])
def test_builtin_shapes_match_the_loaded_data(name):
    from s3l_core.data import BUILTIN_SHAPES

    if name == "fashion-mnist" and not pathlib.Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    data = load_dataset(name)
    shape = BUILTIN_SHAPES[name]
    assert (len(data.train_images), data.channels, data.native_size, data.num_classes) == (
        shape.train_images, shape.channels, shape.native_size, shape.num_classes)  # fmt: skip
