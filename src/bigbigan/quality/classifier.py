"""A small CNN that judges generated images: label accuracy, and features for a Fréchet distance.

The evaluation needs a classifier that ships with the repository (no downloads), trains in a
few minutes on a laptop CPU and exposes a penultimate feature layer. Three conv blocks
(conv 3×3 → BN → ReLU → max-pool 2) take 32×32 to 4×4, then a dense layer gives the
`feature_dim` features and a last dense layer the class logits.

A saved classifier is a directory: `classifier.json` (config, dataset, accuracy, sha256 of the
weights) and `classifier.safetensors`. The JSON is written last, as for checkpoints.

Reproduce the shipped Fashion-MNIST classifier with
`bigbigan train-classifier --dataset fashion_mnist --out models/classifier_fashion_mnist`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bigbigan.config import from_dict, to_dict
from bigbigan.documents import read_document, write_document
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir
from bigbigan.training.checkpoint import load_state, load_verified, write_safetensors
from bigbigan.training.data import SIZE, dataset_info, load_dataset

FORMAT = "bigbigan-classifier"
VERSION = 1
CONFIG_FILE = "classifier.json"
WEIGHTS_FILE = "classifier.safetensors"
FLIP_DATASETS = ("fashion_mnist", "cifar10")  # mirror-symmetric classes: flips are label-safe


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture; the saved JSON rebuilds the network from this alone."""

    channels: int = 1  # image channels: 1 (MNIST family) or 3 (CIFAR-10)
    num_classes: int = 10
    width: int = 32  # conv widths: width, 2·width, 4·width
    feature_dim: int = 128  # penultimate layer: the features the FID is computed on
    dropout: float = 0.3  # before the logits layer, training only

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise BigBiGANError(f"classifier channels must be 1 or 3, found {self.channels}")
        if self.width <= 0 or self.feature_dim <= 0 or self.num_classes < 2:
            raise BigBiGANError(f"classifier config out of range: {self}")


class Classifier(nn.Module):
    """(B, C, 32, 32) images in [0, 1] -> (B, num_classes) logits; `features` for the FID."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.blocks = nn.Sequential(
            _conv_block(cfg.channels, w),  # (B, w, 16, 16)
            _conv_block(w, 2 * w),  # (B, 2w, 8, 8)
            _conv_block(2 * w, 4 * w),  # (B, 4w, 4, 4)
        )
        self.fc = nn.Linear(4 * w * 4 * 4, cfg.feature_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, feature_dim), after the ReLU."""
        assert x.ndim == 4 and x.shape[1:] == (self.cfg.channels, SIZE, SIZE), x.shape
        h = self.blocks(x * 2 - 1)  # centre [0, 1] on zero
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))  # (B, num_classes)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


@dataclass
class ClassifierReport:
    """What training produced; also stored (less `path`) in `classifier.json`."""

    path: Path
    dataset: str
    test_accuracy: float
    epochs: int
    batch_size: int
    seed: int
    train_seconds: float
    parameters: int
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch


# --- inference helpers -----------------------------------------------------------------------


@torch.no_grad()
def predict_batched(
    model: Classifier, images: torch.Tensor, batch_size: int = 500, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, num_classes) and features (N, feature_dim) as float32 NumPy arrays."""
    model.eval()
    logits, feats = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device)
        f = model.features(x)
        feats.append(f.cpu().numpy())
        logits.append(model.head(f).cpu().numpy())
    k, d = model.cfg.num_classes, model.cfg.feature_dim
    if not feats:
        return np.zeros((0, k), np.float32), np.zeros((0, d), np.float32)
    return np.concatenate(logits), np.concatenate(feats)


def accuracy(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, device: str = "cpu"
) -> float:
    logits, _ = predict_batched(model, images, device=device)
    return float((logits.argmax(1) == labels.numpy()).mean())


# --- training --------------------------------------------------------------------------------


def _augment(x: torch.Tensor, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per image: a random shift of up to 2 pixels (zero fill) and, if `flip`, a random
    horizontal flip; one nearest-neighbour resampling with an integer-pixel affine grid."""
    b = x.shape[0]
    shift = torch.randint(-2, 3, (b, 2), generator=generator).float() * (2 / SIZE)
    sign = torch.ones(b)
    if flip:
        sign = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = sign, 1.0
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _train_epoch(
    model: Classifier,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    batches: Sequence[torch.Tensor],
    flip: bool,
    generator: torch.Generator,
    device: str,
) -> tuple[float, int]:
    """One pass over `batches` (index tensors into the training split), each augmented with
    `generator`; returns the mean loss and the accuracy on the augmented training batches."""
    model.train()
    loss_sum, correct = 0.0, 0
    for idx in batches:
        x = _augment(train_x[idx], flip, generator).to(device)
        y = train_y[idx].to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=0.05)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_sum += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
    seen = sum(len(idx) for idx in batches)
    return loss_sum / seen, correct / seen


def train_classifier(
    dataset: str,
    data_dir: str | None,
    out_dir: str | Path,
    *,
    epochs: int = 8,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = True,
    lr: float = 2e-3,
    device: str = "cpu",
    config: ClassifierConfig | None = None,
) -> ClassifierReport:
    """Train on the dataset's train split, measure on its test split, save to `out_dir`.

    Adam with a one-cycle schedule (warm-up then cosine decay to ~0), shift augmentation
    (and flips where the classes are mirror-symmetric). Deterministic for a fixed seed and
    thread count.
    """
    if epochs <= 0:
        raise BigBiGANError(f"--epochs {epochs}: expected a positive integer")
    info = dataset_info(dataset)
    cfg = config or ClassifierConfig(channels=info.channels, num_classes=info.num_classes)
    if (Path(out_dir) / CONFIG_FILE).exists():
        raise BigBiGANError(f"--out {out_dir}: already holds a classifier; pass another --out")
    out_dir = ensure_dir(out_dir)
    train_x, train_y = load_dataset(dataset, "train", data_dir)
    test_x, test_y = load_dataset(dataset, "test", data_dir)
    n = train_x.shape[0]
    if not 0 < batch_size <= n:
        raise BigBiGANError(f"--batch-size {batch_size}: expected 1..{n} (the dataset size)")
    torch.manual_seed(seed)
    # channels_last: PyTorch's CPU max-pool and convolutions are ~1.5x faster in NHWC
    model = Classifier(cfg).to(device, memory_format=torch.channels_last)
    steps_per_epoch = n // batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    generator = torch.Generator().manual_seed(seed)
    flip = dataset in FLIP_DATASETS
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    for epoch in range(epochs):
        batches = torch.randperm(n, generator=generator).split(batch_size)[:steps_per_epoch]
        loss, train_acc = _train_epoch(
            model, optimizer, schedule, train_x, train_y, batches, flip, generator, device
        )
        test_acc = accuracy(model, test_x, test_y, device)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(loss, 6),
                "train_accuracy": round(train_acc, 6),
                "test_accuracy": round(test_acc, 6),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        if progress:
            h = history[-1]
            print(
                f"epoch {epoch + 1}/{epochs}: loss {h['loss']:.4f}, train {h['train_accuracy']:.4f}"
                f", test {h['test_accuracy']:.4f}, {h['seconds']:.0f} s",
                flush=True,
            )
    elapsed = time.perf_counter() - started
    model = model.cpu().eval()
    report = ClassifierReport(
        path=out_dir,
        dataset=dataset,
        test_accuracy=history[-1]["test_accuracy"],
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        train_seconds=round(elapsed, 2),
        parameters=sum(p.numel() for p in model.parameters()),
        history=history,
    )
    save(out_dir, model, dataset=dataset, report=report)
    return report


# --- save / load -----------------------------------------------------------------------------


def save(
    directory: str | Path,
    model: Classifier,
    *,
    dataset: str,
    report: ClassifierReport | None = None,
) -> Path:
    """Write `classifier.safetensors`, then `classifier.json` naming its sha256."""
    directory = ensure_dir(directory)
    digest = write_safetensors(directory / WEIGHTS_FILE, model.state_dict())
    training: dict[str, Any] | None = None
    if report is not None:
        training = {k: v for k, v in report.__dict__.items() if k != "path"}
    document = {
        "dataset": dataset,
        "config": to_dict(model.cfg),
        "test_accuracy": None if report is None else report.test_accuracy,
        "training": training,
        "files": {WEIGHTS_FILE: digest},
    }
    write_document(directory / CONFIG_FILE, FORMAT, document, version=VERSION)
    return directory


@dataclass(frozen=True)
class ClassifierInfo:
    """What `classifier.json` says."""

    directory: Path
    dataset: str
    config: ClassifierConfig
    test_accuracy: float | None
    training: dict[str, Any] | None
    files: dict[str, str]  # file name -> sha256


def read(path: str | Path) -> ClassifierInfo:
    """Parse and validate `classifier.json` (weights not loaded); accepts the dir or the JSON."""
    path = Path(path)
    json_path = path / CONFIG_FILE if path.is_dir() else path
    if not json_path.is_file():
        raise BigBiGANError(f"--classifier {path}: no {CONFIG_FILE} found")
    doc = read_document(json_path, FORMAT)
    if doc.get("version") != VERSION:
        raise BigBiGANError(
            f"{json_path}: classifier version {doc.get('version')}, this bigbigan reads {VERSION}"
        )
    for key in ("dataset", "config", "files"):
        if key not in doc:
            raise BigBiGANError(f"{json_path}: missing key {key!r}")
    config = from_dict(ClassifierConfig, doc["config"], str(json_path))
    return ClassifierInfo(
        json_path.parent,
        doc["dataset"],
        config,
        doc.get("test_accuracy"),
        doc.get("training"),
        dict(doc["files"]),
    )


def load(path: str | Path, device: str = "cpu") -> tuple[Classifier, ClassifierInfo]:
    """Rebuild a saved classifier in eval mode, checking the weights against the JSON."""
    info = read(path)
    tensors = load_verified(info.directory, info.files, WEIGHTS_FILE)
    model = Classifier(info.config)
    load_state(model, tensors, info.directory / WEIGHTS_FILE)
    return model.to(device).eval(), info
