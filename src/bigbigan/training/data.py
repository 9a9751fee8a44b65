"""Datasets as NCHW float32 tensors in [0, 1] at 32×32, read from local files only.

MNIST and Fashion-MNIST come from IDX files, CIFAR-10 from its binary batches, `digits` from
scikit-learn. Nothing is downloaded: a missing or malformed file is a one-line BigBiGANError.
Preprocessing matches the reference: scale to [0, 1], then bilinear resize to 32×32
(half-pixel centres, no antialiasing, the same as TF's `tf.image.resize`).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bigbigan.errors import BigBiGANError

SIZE = 32  # every dataset is served at SIZE×SIZE
SPLITS = ("train", "test")
_CHUNK = 8192  # images converted and resized at a time: bounds the float32 working copy


@dataclass(frozen=True)
class DatasetInfo:
    channels: int
    num_classes: int
    default_dir: str | None  # where the files are when --data-dir is not given


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(channels=1, num_classes=10, default_dir=None),
    "fashion_mnist": DatasetInfo(
        channels=1,
        num_classes=10,
        default_dir="/usr/share/datasets/fashion-mnist",  # Debian: dataset-fashion-mnist
    ),
    "cifar10": DatasetInfo(channels=3, num_classes=10, default_dir=None),
    "digits": DatasetInfo(channels=1, num_classes=10, default_dir=None),  # bundled in sklearn
}


def dataset_info(name: str) -> DatasetInfo:
    """Look up a dataset by name; an unknown name is a user error listing the choices."""
    if name not in DATASETS:
        raise BigBiGANError(f"--dataset {name!r}: unknown, expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(
    name: str, split: str = "train", data_dir: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return images float32 (N, C, 32, 32) in [0, 1] and labels int64 (N,)."""
    info = dataset_info(name)
    if split not in SPLITS:
        raise BigBiGANError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    if name == "digits":
        raw, max_value, labels = _load_digits(split)
    else:
        folder = _data_dir(name, info, data_dir)
        raw, max_value, labels = _LOADERS[name](folder, split)
    images = _preprocess(raw, max_value)
    assert images.shape[1] == info.channels, (name, images.shape)
    return images, torch.from_numpy(labels.astype(np.int64))


def iterate_minibatches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled (x, y) batches; the order depends only on `generator`.

    The last incomplete batch is dropped so every step sees the same batch size. The batch size
    is checked here, at the call, not at the first `next`.
    """
    n = images.shape[0]
    assert labels.shape == (n,), (images.shape, labels.shape)
    if not 0 < batch_size <= n:
        raise BigBiGANError(f"--batch-size {batch_size}: expected 1..{n} (the dataset size)")
    order = torch.randperm(n, generator=generator).to(images.device)
    batches = [order[s : s + batch_size] for s in range(0, n - batch_size + 1, batch_size)]
    return ((images[idx], labels[idx]) for idx in batches)


# --- preprocessing ---------------------------------------------------------------------------


def _preprocess(raw: np.ndarray, max_value: float) -> torch.Tensor:
    """(N, C, H, W) integer-valued array -> float32 (N, C, 32, 32) in [0, 1], in chunks."""
    n, c, h, w = raw.shape
    out = torch.empty((n, c, SIZE, SIZE), dtype=torch.float32)
    for start in range(0, n, _CHUNK):
        x = torch.from_numpy(raw[start : start + _CHUNK].astype(np.float32)) / max_value
        if (h, w) != (SIZE, SIZE):
            x = F.interpolate(
                x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=False
            )
        out[start : start + _CHUNK] = x
    return out


# --- file access -----------------------------------------------------------------------------


def _data_dir(name: str, info: DatasetInfo, data_dir: str | None) -> Path:
    """The dataset's folder: --data-dir, else the dataset's default; it must exist."""
    directory = data_dir if data_dir is not None else info.default_dir
    if directory is None:
        raise BigBiGANError(f"--dataset {name}: no default location, pass --data-dir DIR")
    folder = Path(directory)
    if not folder.is_dir():
        hint = "" if data_dir is not None else f" (default for {name}; pass --data-dir)"
        raise BigBiGANError(f"--data-dir {folder}: directory not found{hint}")
    return folder


def _read_bytes(path: Path) -> bytes:
    """Whole file, gunzipped if it ends in .gz; I/O and gzip failures name the file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise BigBiGANError(f"{path}: cannot read ({e})") from e


def _find(folder: Path, names: list[str], shown: str) -> Path:
    """First of `names` present in `folder`; `shown` is how the error names what was sought."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise BigBiGANError(f"--data-dir {folder}: {shown} not found")


def _check_labels(path: Path, labels: np.ndarray, num_classes: int = 10) -> None:
    """A label past the class count would index past the class embedding later: stop here."""
    if labels.size and int(labels.max()) >= num_classes:
        raise BigBiGANError(
            f"{path}: label {int(labels.max())} found, expected 0..{num_classes - 1}"
        )


# --- IDX (MNIST, Fashion-MNIST) --------------------------------------------------------------

_IDX_IMAGES = 0x00000803  # uint8, 3 dims
_IDX_LABELS = 0x00000801  # uint8, 1 dim
_IDX_PREFIX = {"train": "train", "test": "t10k"}


def _read_idx(path: Path, magic: int, tail: tuple[int, ...]) -> np.ndarray:
    """Parse a uint8 IDX file of shape (N, *tail), checking magic, dims and size."""
    data = _read_bytes(path)
    what = "IDX images" if magic == _IDX_IMAGES else "IDX labels"
    ndim = 1 + len(tail)
    header = 4 + 4 * ndim  # magic, then one big-endian uint32 per dimension
    size = f"size {len(data)} bytes" + (" (decompressed)" if path.suffix == ".gz" else "")
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found is not None and found != magic:  # before the length: a wrong file says so
        raise BigBiGANError(
            f"{path}: bad magic number {found:#010x}, expected {magic:#010x} ({what})"
        )
    if len(data) < header:
        raise BigBiGANError(f"{path}: {size}, shorter than the {header}-byte {what} header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    if dims[1:] != tail:
        shown = "×".join(map(str, dims))
        raise BigBiGANError(f"{path}: dimensions {shown}, expected N×{'×'.join(map(str, tail))}")
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise BigBiGANError(f"{path}: {size}, header says {expected}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _idx_names(prefix: str, kind: str, ndim: int) -> list[str]:
    """Accepted spellings, plain before .gz: train-images-idx3-ubyte, train-images.idx3-ubyte."""
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    return names + [n + ".gz" for n in names]


def _load_idx(folder: Path, split: str) -> tuple[np.ndarray, float, np.ndarray]:
    prefix = _IDX_PREFIX[split]
    images_path = _find(folder, _idx_names(prefix, "images", 3), f"{prefix}-images-idx3-ubyte(.gz)")
    labels_path = _find(folder, _idx_names(prefix, "labels", 1), f"{prefix}-labels-idx1-ubyte(.gz)")
    images = _read_idx(images_path, _IDX_IMAGES, (28, 28))  # (N, 28, 28)
    labels = _read_idx(labels_path, _IDX_LABELS, ())  # (N,)
    if len(labels) != len(images):
        raise BigBiGANError(
            f"{labels_path}: {len(labels)} labels, but {images_path.name} has {len(images)} images"
        )
    _check_labels(labels_path, labels)
    return images[:, None], 255.0, labels


# --- CIFAR-10 binary -------------------------------------------------------------------------

_CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte, then R, G, B planes of 32×32
_CIFAR_FILES = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
}
_CIFAR_SUBDIR = "cifar-10-batches-bin"  # what the official tarball unpacks to


def _load_cifar10(folder: Path, split: str) -> tuple[np.ndarray, float, np.ndarray]:
    if (folder / _CIFAR_SUBDIR).is_dir():
        folder = folder / _CIFAR_SUBDIR
    images, labels = [], []
    for name in _CIFAR_FILES[split]:
        path = _find(folder, [name], name)
        data = _read_bytes(path)
        if not data or len(data) % _CIFAR_RECORD:
            raise BigBiGANError(
                f"{path}: size {len(data)} bytes, expected a non-zero multiple of {_CIFAR_RECORD}"
                " (CIFAR-10 binary records)"
            )
        records = np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD)
        _check_labels(path, records[:, 0])
        labels.append(records[:, 0])
        images.append(records[:, 1:].reshape(-1, 3, 32, 32))  # channel-major already
    return np.concatenate(images), 255.0, np.concatenate(labels)


# --- scikit-learn digits ---------------------------------------------------------------------

_DIGITS_TEST_FRACTION = 0.2  # the last 20%, so the split never changes


def _load_digits(split: str) -> tuple[np.ndarray, float, np.ndarray]:
    from sklearn.datasets import load_digits  # slow import: only when asked for

    digits = load_digits()
    images, labels = digits.images[:, None], digits.target  # (N, 1, 8, 8), values 0..16
    n_train = len(images) - int(len(images) * _DIGITS_TEST_FRACTION)
    part = slice(None, n_train) if split == "train" else slice(n_train, None)
    return images[part], 16.0, labels[part]


_LOADERS: dict[str, Callable[[Path, str], tuple[np.ndarray, float, np.ndarray]]] = {
    "mnist": _load_idx,
    "fashion_mnist": _load_idx,
    "cifar10": _load_cifar10,
}
