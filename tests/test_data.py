"""Dataset readers: tiny IDX and CIFAR files written here, plus the bundled digits."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigbigan.errors import BigBiGANError
from bigbigan.training.data import DATASETS, dataset_info, iterate_minibatches, load_dataset

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, data: bytes) -> Path:
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_mnist(folder: Path, n: int = 5, gz: bool = False, prefix: str = "t10k") -> np.ndarray:
    """Write an n-image split to `folder`; return the images (n, 28, 28) uint8."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0] = 255  # one all-white image: must map to exactly 1.0
    labels = np.arange(n, dtype=np.uint8) % 10
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images, 0x803))
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels, 0x801))
    return images


def make_cifar(folder: Path, name: str, n: int = 4, label: int | None = None) -> np.ndarray:
    """Write n CIFAR-10 records to folder/name; return the images (n, 3, 32, 32) uint8."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = np.full(n, label, np.uint8) if label is not None else np.arange(n) % 10
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(n, -1)], axis=1)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(records.tobytes())
    return images


def assert_error(match: str, fn, *args, **kwargs) -> str:
    """The call fails with a one-line BigBiGANError whose message contains `match`."""
    with pytest.raises(BigBiGANError) as e:
        fn(*args, **kwargs)
    message = str(e.value)
    assert match in message, message
    assert "\n" not in message
    return message


# --- happy paths -----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_plain_and_gz(tmp_path: Path, gz: bool) -> None:
    raw = make_mnist(tmp_path, gz=gz)
    images, labels = load_dataset("mnist", "test", str(tmp_path))
    assert images.shape == (5, 1, 32, 32) and images.dtype == torch.float32
    assert labels.tolist() == [0, 1, 2, 3, 4] and labels.dtype == torch.int64
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert torch.all(images[0] == 1.0)
    expected = F.interpolate(
        torch.from_numpy(raw[:, None].astype(np.float32)) / 255,
        size=(32, 32),
        mode="bilinear",
        align_corners=False,
        antialias=False,
    )
    torch.testing.assert_close(images, expected, rtol=0, atol=0)


def test_mnist_dotted_names_and_train_split(tmp_path: Path) -> None:
    make_mnist(tmp_path, n=3, prefix="train")
    for kind in ("images-idx3", "labels-idx1"):
        old = tmp_path / f"train-{kind}-ubyte"
        old.rename(tmp_path / f"train-{kind.replace('-', '.')}-ubyte")
    images, labels = load_dataset("fashion_mnist", "train", str(tmp_path))
    assert images.shape == (3, 1, 32, 32) and labels.shape == (3,)


def test_cifar10_in_subdir(tmp_path: Path) -> None:
    sub = tmp_path / "cifar-10-batches-bin"
    raws = [make_cifar(sub, f"data_batch_{i}.bin", n=2) for i in range(1, 6)]
    make_cifar(sub, "test_batch.bin", n=3)
    images, labels = load_dataset("cifar10", "train", str(tmp_path))
    assert images.shape == (10, 3, 32, 32) and labels.shape == (10,)
    expected = torch.from_numpy(np.concatenate(raws).astype(np.float32)) / 255
    torch.testing.assert_close(images, expected, rtol=0, atol=0)  # no resize at 32×32
    images, labels = load_dataset("cifar10", "test", str(tmp_path))
    assert images.shape == (3, 3, 32, 32) and labels.tolist() == [0, 1, 2]


def test_digits_split_and_range() -> None:
    train_x, train_y = load_dataset("digits", "train")
    test_x, test_y = load_dataset("digits", "test")
    assert train_x.shape[1:] == (1, 32, 32) and test_x.shape[1:] == (1, 32, 32)
    assert len(train_x) + len(test_x) == 1797 and len(test_x) == 359
    assert train_x.min() >= 0.0 and train_x.max() <= 1.0
    assert set(train_y.tolist()) == set(range(10)) and test_y.dtype == torch.int64
    again, _ = load_dataset("digits", "test")
    assert torch.equal(again, test_x)  # deterministic split


def test_dataset_info() -> None:
    assert dataset_info("cifar10").channels == 3
    assert all(DATASETS[n].channels == 1 for n in ("mnist", "fashion_mnist", "digits"))
    assert all(info.num_classes == 10 for info in DATASETS.values())
    assert DATASETS["fashion_mnist"].default_dir == FASHION_DIR


def test_iterate_minibatches_is_deterministic() -> None:
    images = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
    labels = torch.arange(10)

    def epoch(seed: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        batches = list(iterate_minibatches(images, labels, 3, gen))
        for x, y in batches:
            assert torch.equal(x.view(-1).long(), y)  # images and labels stay paired
        return [y.tolist() for _, y in batches]

    first = epoch(0)
    assert len(first) == 3 and all(len(b) == 3 for b in first)  # last incomplete batch dropped
    assert len({i for b in first for i in b}) == 9
    assert epoch(0) == first
    gen = torch.Generator()
    assert_error("--batch-size 11", iterate_minibatches, images, labels, 11, gen)
    assert_error("--batch-size 0", iterate_minibatches, images, labels, 0, gen)


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split() -> None:
    images, labels = load_dataset("fashion_mnist", "test")
    assert images.shape == (10000, 1, 32, 32) and images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert torch.bincount(labels).tolist() == [1000] * 10


# --- errors ----------------------------------------------------------------------------------


def test_unknown_dataset_and_split(tmp_path: Path) -> None:
    message = assert_error("'imagenet'", dataset_info, "imagenet")
    assert "mnist" in message and "cifar10" in message
    assert_error("'val'", load_dataset, "digits", "val")


def test_missing_dir_and_files(tmp_path: Path) -> None:
    assert_error("--data-dir", load_dataset, "mnist", "train")  # no default for mnist
    assert_error(
        f"{tmp_path / 'nope'}: directory not found",
        load_dataset,
        "mnist",
        "train",
        str(tmp_path / "nope"),
    )
    assert_error(
        f"--data-dir {tmp_path}: train-images-idx3-ubyte(.gz) not found",
        load_dataset,
        "mnist",
        "train",
        str(tmp_path),
    )
    assert_error("data_batch_1.bin not found", load_dataset, "cifar10", "train", str(tmp_path))


def test_wrong_magic(tmp_path: Path) -> None:
    make_mnist(tmp_path, gz=True)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(bad, idx_bytes(np.zeros(5, np.uint8), 0x801))
    assert_error(
        f"{bad}: bad magic number 0x00000801, expected 0x00000803 (IDX images)",
        load_dataset,
        "mnist",
        "test",
        str(tmp_path),
    )


def test_truncated_idx(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    assert_error(
        f"{path}: size 1000 bytes, header says {16 + 5 * 784}",
        load_dataset,
        "mnist",
        "test",
        str(tmp_path),
    )
    path.write_bytes(b"\x00\x00")
    assert_error(f"{path}: size 2 bytes", load_dataset, "mnist", "test", str(tmp_path))


def test_wrong_dims(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((5, 32, 32)), 0x803))
    assert_error(f"{path}: dimensions 5×32×32", load_dataset, "mnist", "test", str(tmp_path))


def test_corrupt_gzip(tmp_path: Path) -> None:
    make_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])  # cut off mid-stream
    assert_error(str(path), load_dataset, "mnist", "test", str(tmp_path))
    path.write_bytes(b"not gzip at all")
    assert_error(str(path), load_dataset, "mnist", "test", str(tmp_path))


def test_count_mismatch(tmp_path: Path) -> None:
    make_mnist(tmp_path, n=5)
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(4), 0x801))
    message = assert_error(f"{path}: 4 labels", load_dataset, "mnist", "test", str(tmp_path))
    assert "5 images" in message


def test_idx_bad_label(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.full(5, 10), 0x801))
    assert_error(f"{path}: label 10", load_dataset, "mnist", "test", str(tmp_path))


def test_cifar_bad_size_and_label(tmp_path: Path) -> None:
    make_cifar(tmp_path, "test_batch.bin", n=2)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1])
    assert_error(
        f"{path}: size {2 * 3073 - 1} bytes", load_dataset, "cifar10", "test", str(tmp_path)
    )
    path.write_bytes(b"")
    assert_error(f"{path}: size 0 bytes", load_dataset, "cifar10", "test", str(tmp_path))
    make_cifar(tmp_path, "test_batch.bin", n=2, label=12)
    assert_error(f"{path}: label 12", load_dataset, "cifar10", "test", str(tmp_path))
