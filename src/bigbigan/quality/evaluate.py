"""`bigbigan evaluate`: how good is a trained BigBiGAN, each number next to its reference.

For the checkpoint's dataset, with the evaluation classifier (`bigbigan.quality.classifier`):
- generation: the classifier's label accuracy on G(z, y) against y (conditional models), next to
  its accuracy on the real test images; the Fréchet distance between classifier features of n
  generated images and of the real test set, next to its floor (a real-train subset of the same
  size against the real test set); the label accuracy class by class beside the classifier's on
  real images of that class, and the confusion matrix (which class G's images of a class are
  read as);
- encoder: the paper's linear evaluation (docs/quality.md) -- a multinomial logistic regression
  fitted by L-BFGS to convergence on the whole training split, L2 chosen on a held-out part of
  it, standardised features, scored on the test split -- with 1-NN and 5-NN beside it, on raw
  pixels, on E's z (mu for a stochastic encoder), on E's pooled trunk features and on BN+CReLU
  of those; the mean absolute error of reconstructions G(E(x), y) of real test images and the
  classifier's label accuracy on them. An EMA generator/encoder, if the model keeps one, is the
  one evaluated.

Without the dataset's files only the label accuracy of generated images is measured (against
the classifier's recorded test accuracy), and the result names what to install.
Every random choice (noise, subsets) comes from the seed: the same call gives the same numbers.
The probes are in probes.py, the table a person reads in report.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bigbigan.documents import document
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir, write_text
from bigbigan.images import save_grid, save_labelled_rows
from bigbigan.model.networks import BigBiGAN, Encoder, Generator
from bigbigan.quality import classifier as classifier_module
from bigbigan.quality.metrics import PROTOCOL as PROBE_PROTOCOL
from bigbigan.quality.metrics import (
    accuracy_by_class,
    confusion_matrix,
    frechet_distance,
    label_accuracy,
    mean_abs_error,
)
from bigbigan.quality.probes import default_cache_dir, feature_probes
from bigbigan.shipped import MODELS_DIR
from bigbigan.training.checkpoint import load_model
from bigbigan.training.data import load_dataset
from bigbigan.training.sampling import (
    TRUNCATION,
    check_truncation,
    class_labels,
    truncated_normal,
    truncated_normal_rms,
)

EVALUATION_FILE = "evaluation.json"
EVALUATION_FORMAT = "bigbigan-evaluation"
RECONSTRUCTIONS_FILE = "reconstructions.png"
SAMPLES_FILE = "samples.png"
# Where a dataset's files come from when they are missing (named in the result).
INSTALL_HINTS = {"fashion_mnist": "apt-get install dataset-fashion-mnist"}
GRID_IMAGES = 10
SAMPLE_GRID = 100

# Subsets come from independent streams derived from the seed, so one subset does not shift
# when another changes; the noise comes from default_rng(seed) itself, as in `make-inputs`.
_STREAM_FLOOR, _STREAM_PROBE, _STREAM_RECON = range(1, 4)

Real = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # train x, y; test x, y


def default_classifier_path(dataset: str) -> Path:
    """`models/classifier_<dataset>/` in the repository this package was installed from."""
    path = MODELS_DIR / f"classifier_{dataset}"
    if not (path / classifier_module.CONFIG_FILE).is_file():
        raise BigBiGANError(
            f"no evaluation classifier for {dataset} at {path}; pass --classifier DIR "
            f"(train one with `bigbigan train-classifier --dataset {dataset} --out DIR`)"
        )
    return path


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _subset(seed: int, stream: int, total: int, size: int) -> np.ndarray:
    """`size` distinct indices of range(total), sorted, chosen by (seed, stream)."""
    return np.sort(_rng(seed, stream).choice(total, size=min(size, total), replace=False))


def _first_of_each_class(labels: torch.Tensor, count: int) -> np.ndarray:
    """Indices of the first test image of classes 0, 1, ... (then the next ones), `count` long."""
    labels_np = labels.numpy()
    firsts = [int(np.argmax(labels_np == c)) for c in np.unique(labels_np)]
    rest = np.setdiff1d(np.arange(len(labels_np)), firsts)
    return np.concatenate([firsts, rest])[:count].astype(np.int64)


def _load_real(dataset: str, data_dir: str | None) -> tuple[Real | None, str | None]:
    """(train_x, train_y, test_x, test_y), or None and why not (naming what to install)."""
    try:
        train_x, train_y = load_dataset(dataset, "train", data_dir)
        test_x, test_y = load_dataset(dataset, "test", data_dir)
    except BigBiGANError as e:
        hint = INSTALL_HINTS.get(dataset)
        fix = f"`{hint}` or pass --data-dir" if hint else "pass --data-dir"
        return None, f"{e}; metrics that need real {dataset} images skipped ({fix})"
    return (train_x, train_y, test_x, test_y), None


@torch.no_grad()
def _batched(
    fn: Callable[..., torch.Tensor],
    tensors: list[torch.Tensor | None],
    batch_size: int,
    device: str,
) -> torch.Tensor:
    """fn(*batch) over the first dimension, on `device`; the result is concatenated on the CPU."""
    n = next(t for t in tensors if t is not None).shape[0]
    out = []
    for start in range(0, n, batch_size):
        args = [None if t is None else t[start : start + batch_size].to(device) for t in tensors]
        out.append(fn(*args).float().cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class _Nets:
    """The networks under evaluation, each run in batches of `batch_size` on `device`."""

    generator: Generator
    encoder: Encoder
    classifier: classifier_module.Classifier
    conditional: bool
    batch_size: int
    device: str

    def classify(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(logits, features) of the evaluation classifier."""
        return classifier_module.predict_batched(
            self.classifier, images, self.batch_size, self.device
        )

    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """G(z, y); `y` is dropped for an unconditional model."""
        labels = y if self.conditional else None
        return _batched(self.generator, [z, labels], self.batch_size, self.device)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, pooled trunk features) of real images; z is mu for a stochastic encoder."""
        trunk = _batched(self.encoder.features, [x], self.batch_size, self.device)
        return _batched(self.encoder.latent, [trunk], self.batch_size, self.device), trunk


def evaluate(
    checkpoint_path: str | Path,
    *,
    classifier_path: str | Path | None = None,
    n: int = 10_000,
    seed: int = 0,
    data_dir: str | None = None,
    out_dir: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 500,
    probe_train: int | None = None,
    live_weights: bool = False,
    cache_dir: str | Path | None = "default",
    truncation: float = TRUNCATION,
) -> dict[str, Any]:
    """Evaluate a checkpoint on its dataset; see the module docstring. Returns nested sections
    ("generation", "encoder") plus what was evaluated; writes `evaluation.json` and PNG grids
    to `out_dir` when given. `probe_train` fits the probes on a seeded subset of the training
    split (tests); by default they use all of it. `live_weights` evaluates the trained G and E
    of a checkpoint that also keeps EMA copies (which are evaluated by default). The pixel
    probes are cached in `cache_dir` (default: `default_cache_dir()`; None: not cached).
    `truncation` bounds G's noise (default: training's); a lower one trades variety for typical
    images (BigGAN's truncation trick), so every generation figure depends on it."""
    started = time.perf_counter()
    _check_sizes(n, batch_size, probe_train)
    check_truncation(truncation, "--truncation")
    model, ckpt = load_model(checkpoint_path, device)
    dataset = ckpt.dataset
    if dataset is None:
        raise BigBiGANError(
            f"--checkpoint {checkpoint_path}: checkpoint.json names no training dataset"
        )
    cfg = model.cfg
    cls_path = Path(classifier_path) if classifier_path else default_classifier_path(dataset)
    clf, clf_info = _load_classifier(cls_path, dataset, cfg.channels, device)
    if data_dir is None and ckpt.train is not None:
        data_dir = ckpt.train.data_dir
    real, missing = _load_real(dataset, data_dir)
    generator, encoder_net = (
        (model.G, model.E) if live_weights else (model.generator, model.encoder)
    )
    nets = _Nets(generator, encoder_net, clf, cfg.conditional, batch_size, device)
    gen_logits, gen_feats, y_gen, first_samples = _generated(nets, model, n, seed, truncation)
    label_acc = label_accuracy(gen_logits, y_gen) if cfg.conditional else None
    real_accuracy = clf_info.test_accuracy
    generation: dict[str, Any] = {"n": n, "truncation": truncation, "label_accuracy": label_acc}
    if cfg.conditional:
        confusion = confusion_matrix(gen_logits, y_gen, cfg.num_classes)
        generation["label_accuracy_by_class"] = accuracy_by_class(confusion)
        generation["confusion"] = confusion.tolist()  # row: the class asked for; column: read
    encoder: dict[str, Any] = {}
    z_test = None
    if real is not None:
        # Real test images: the reference for every number below.
        test_logits, test_feats = nets.classify(real[2])
        real_accuracy = label_accuracy(test_logits, real[3].numpy())
        real_confusion = confusion_matrix(test_logits, real[3].numpy(), cfg.num_classes)
        generation["real_label_accuracy_by_class"] = accuracy_by_class(real_confusion)
        generation |= _fid(nets, gen_feats, test_feats, real[0], n, seed)
        cache = default_cache_dir() if cache_dir == "default" else cache_dir
        cache = None if cache is None else Path(cache)
        encoder, z_test = _encoder_metrics(nets, real, n, seed, probe_train, cache)
    generation["real_label_accuracy"] = real_accuracy
    if encoder:
        encoder["real_label_accuracy"] = real_accuracy
    body: dict[str, Any] = {
        "checkpoint": str(ckpt.directory),
        "step": ckpt.step,
        "dataset": dataset,
        "conditional": cfg.conditional,
        "ema": cfg.ema and not live_weights,
        "seed": seed,
        "missing": missing,
        "classifier": {
            "path": str(cls_path),
            "test_accuracy": real_accuracy,
            "feature_dim": clf_info.config.feature_dim,
        },
        "generation": generation,
        "encoder": encoder or None,
    }
    result = document(EVALUATION_FORMAT, body)
    if out_dir is not None:
        out = ensure_dir(out_dir)
        result["files"] = _save_grids(nets, out, first_samples, cfg.num_classes, real, z_test)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if out_dir is not None:
        write_text(Path(out_dir) / EVALUATION_FILE, json.dumps(result, indent=2) + "\n")
    return result


def _check_sizes(n: int, batch_size: int, probe_train: int | None) -> None:
    if n < 2:
        raise BigBiGANError(f"--n {n}: expected at least 2 (a covariance needs two samples)")
    if batch_size <= 0:
        raise BigBiGANError(f"--batch-size {batch_size}: expected a positive integer")
    if probe_train is not None and probe_train < 2:
        raise BigBiGANError(f"probe_train {probe_train}: expected at least 2")


def _load_classifier(
    path: Path, dataset: str, channels: int, device: str
) -> tuple[classifier_module.Classifier, classifier_module.ClassifierInfo]:
    """The evaluation classifier, which must have been trained on the checkpoint's dataset."""
    clf, info = classifier_module.load(path, device)
    if info.dataset != dataset:
        raise BigBiGANError(
            f"--classifier {path}: trained on {info.dataset}, the checkpoint on {dataset}"
        )
    if info.config.channels != channels:
        raise BigBiGANError(
            f"--classifier {path}: takes {info.config.channels} channel(s), "
            f"the checkpoint's images have {channels}"
        )
    return clf, info


def _generated(
    nets: _Nets, model: BigBiGAN, n: int, seed: int, truncation: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The classifier's logits and features of n images from seeded noise, every class equally
    often, |z| <= truncation (streamed: only those are kept), their labels, and the first
    `SAMPLE_GRID` images."""
    cfg, batch_size = model.cfg, nets.batch_size
    noise = truncated_normal(np.random.default_rng(seed), (n, cfg.z_dim), truncation)
    z = torch.from_numpy(noise)
    y_gen = torch.from_numpy(class_labels(n, cfg.num_classes)).long()
    gen_logits, gen_feats = [], []
    first_samples = None
    for start in range(0, n, batch_size):
        images = nets.generate(z[start : start + batch_size], y_gen[start : start + batch_size])
        if first_samples is None:
            first_samples = images[:SAMPLE_GRID].numpy()
        logits, feats = nets.classify(images)
        gen_logits.append(logits)
        gen_feats.append(feats)
    assert first_samples is not None
    return np.concatenate(gen_logits), np.concatenate(gen_feats), y_gen.numpy(), first_samples


def _fid(
    nets: _Nets,
    gen_feats: np.ndarray,
    test_feats: np.ndarray,
    train_x: torch.Tensor,
    n: int,
    seed: int,
) -> dict[str, Any]:
    """The classifier-feature FID of the generated images against the real test set, beside its
    floor: a real-train subset of the same size against the same test set."""
    floor_idx = _subset(seed, _STREAM_FLOOR, len(train_x), min(n, len(test_feats)))
    _, floor_feats = nets.classify(train_x[floor_idx])
    return {
        "fid": frechet_distance(gen_feats, test_feats),
        "fid_floor": frechet_distance(floor_feats, test_feats),
        "fid_floor_n": len(floor_idx),
        "fid_reference_n": len(test_feats),
    }


def _encoder_metrics(
    nets: _Nets,
    real: Real,
    n: int,
    seed: int,
    probe_train: int | None,
    cache_dir: Path | None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """The probes on pixels and E's features, and reconstructions of real test images; also E's
    z of the whole test split (the grids reuse it)."""
    train_x, train_y, test_x, test_y = real
    if probe_train is not None:
        probe_idx = _subset(seed, _STREAM_PROBE, len(train_x), probe_train)
        train_x, train_y = train_x[probe_idx], train_y[probe_idx]
    z_train, trunk_train = nets.encode(train_x)
    z_test, trunk_test = nets.encode(test_x)
    probes, pixels_cached = feature_probes(
        (train_x.flatten(1).numpy(), test_x.flatten(1).numpy()),
        (z_train.numpy(), z_test.numpy()),
        (trunk_train.numpy(), trunk_test.numpy()),
        (train_y.numpy(), test_y.numpy()),
        seed,
        cache_dir,
    )
    recon_idx = _subset(seed, _STREAM_RECON, len(test_x), n)
    recon_y = test_y[recon_idx]
    recon = nets.generate(z_test[recon_idx], recon_y)
    recon_logits, _ = nets.classify(recon)
    metrics = {
        "probe_accuracy": probes["z"]["logistic"],
        "pixel_probe_accuracy": probes["pixels"]["logistic"],
        "best_feature_probe": max(
            (p["logistic"], name) for name, p in probes.items() if name != "pixels"
        )[1],
        "probes": probes,
        "probe_protocol": PROBE_PROTOCOL,
        "pixel_probes_cached": pixels_cached,
        "probe_train": len(train_x),
        "probe_test": len(test_x),
        "z_rms": float(z_test.square().mean().sqrt()),
        "prior_rms": truncated_normal_rms(),
        "reconstruction_n": len(recon_idx),
        "reconstruction_mae": mean_abs_error(recon.numpy(), test_x[recon_idx].numpy()),
        "reconstruction_label_accuracy": label_accuracy(recon_logits, recon_y.numpy()),
    }
    return metrics, z_test


def _save_grids(
    nets: _Nets,
    out: Path,
    first_samples: np.ndarray,
    num_classes: int,
    real: Real | None,
    z_test: torch.Tensor | None,
) -> dict[str, str]:
    """The sample grid, and real test images above their reconstructions when there are real
    images; returns the files `evaluation.json` will list (itself included)."""
    files = {"evaluation": EVALUATION_FILE, "samples": SAMPLES_FILE}
    if real is not None and z_test is not None:
        test_x, test_y = real[2], real[3]
        grid_idx = _first_of_each_class(test_y, min(GRID_IMAGES, len(test_x)))
        grid_recon = nets.generate(z_test[grid_idx], test_y[grid_idx])
        save_labelled_rows(
            [test_x[grid_idx].numpy(), grid_recon.numpy()],
            ["real", "reconstruction"],
            out / RECONSTRUCTIONS_FILE,
        )
        files["reconstructions"] = RECONSTRUCTIONS_FILE
    save_grid(first_samples, out / SAMPLES_FILE, ncol=min(num_classes, SAMPLE_GRID))
    return files
