"""`bigbigan evaluate`: how good is a trained BigBiGAN, each number next to its reference.

For the checkpoint's dataset, with the evaluation classifier (`bigbigan.quality.classifier`):
- generation: the classifier's label accuracy on G(z, y) against y (conditional models), next to
  its accuracy on the real test images; the Fréchet distance between classifier features of n
  generated images and of the real test set, next to its floor (a real-train subset of the same
  size against the real test set);
- encoder: a linear probe on E(x) (trained on a real-train subset, tested on the real test set),
  next to the same probe on raw pixels; the mean absolute error of reconstructions G(E(x), y) of
  real test images and the classifier's label accuracy on them.

Every random choice (noise, subsets) comes from the seed: the same call gives the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bigbigan.documents import document
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir, write_text
from bigbigan.images import save_grid, save_labelled_rows
from bigbigan.quality import classifier as classifier_module
from bigbigan.quality.metrics import frechet_distance, label_accuracy, linear_probe, mean_abs_error
from bigbigan.shipped import MODELS_DIR
from bigbigan.training.checkpoint import load_model
from bigbigan.training.data import load_dataset
from bigbigan.training.sampling import class_labels, truncated_normal

EVALUATION_FILE = "evaluation.json"
EVALUATION_FORMAT = "bigbigan-evaluation"
RECONSTRUCTIONS_FILE = "reconstructions.png"
SAMPLES_FILE = "samples.png"
PROBE_TRAIN = 10_000  # real training images the linear probes are fitted on
GRID_IMAGES = 10
SAMPLE_GRID = 100

# Subsets come from independent streams derived from the seed, so one subset does not shift
# when another changes; the noise comes from default_rng(seed) itself, as in `make-inputs`.
_STREAM_FLOOR, _STREAM_PROBE, _STREAM_RECON = range(1, 4)


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


def _first_of_each_class(labels: torch.Tensor, count: int) -> np.ndarray:
    """Indices of the first test image of classes 0, 1, ... (then the next ones), `count` long."""
    labels_np = labels.numpy()
    firsts = [int(np.argmax(labels_np == c)) for c in np.unique(labels_np)]
    rest = np.setdiff1d(np.arange(len(labels_np)), firsts)
    return np.concatenate([firsts, rest])[:count].astype(np.int64)


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
    probe_train: int = PROBE_TRAIN,
) -> dict[str, Any]:
    """Evaluate a checkpoint on its dataset; see the module docstring. Returns nested sections
    ("generation", "encoder") plus what was evaluated; writes `evaluation.json` and PNG grids
    to `out_dir` when given."""
    if n < 2:
        raise BigBiGANError(f"--n {n}: expected at least 2 (a covariance needs two samples)")
    if batch_size <= 0:
        raise BigBiGANError(f"--batch-size {batch_size}: expected a positive integer")
    if probe_train < 2:
        raise BigBiGANError(f"probe_train {probe_train}: expected at least 2")
    model, ckpt = load_model(checkpoint_path, device)
    dataset = ckpt.dataset
    if dataset is None:
        raise BigBiGANError(
            f"--checkpoint {checkpoint_path}: checkpoint.json names no training dataset"
        )
    cfg = model.cfg
    cls_path = Path(classifier_path) if classifier_path else default_classifier_path(dataset)
    clf, clf_info = classifier_module.load(cls_path, device)
    if clf_info.dataset != dataset:
        raise BigBiGANError(
            f"--classifier {cls_path}: trained on {clf_info.dataset}, the checkpoint on {dataset}"
        )
    if clf_info.config.channels != cfg.channels:
        raise BigBiGANError(
            f"--classifier {cls_path}: takes {clf_info.config.channels} channel(s), "
            f"the checkpoint's images have {cfg.channels}"
        )
    if data_dir is None and ckpt.train is not None:
        data_dir = ckpt.train.data_dir
    train_x, train_y = load_dataset(dataset, "train", data_dir)
    test_x, test_y = load_dataset(dataset, "test", data_dir)

    def classify(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return classifier_module.predict_batched(clf, images, batch_size, device)

    def generate(z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return _batched(model.G, [z, y], batch_size, device)

    def encode(x: torch.Tensor) -> torch.Tensor:
        return _batched(model.E, [x], batch_size, device)

    # Real test images: the reference for every number below.
    test_logits, test_feats = classify(test_x)
    real_accuracy = label_accuracy(test_logits, test_y.numpy())

    # Generation: n images from seeded noise, every class equally often.
    z = torch.from_numpy(truncated_normal(np.random.default_rng(seed), (n, cfg.z_dim)))
    y_gen = torch.from_numpy(class_labels(n, cfg.num_classes)).long()
    gen_logits, gen_feats = [], []
    first_samples = None
    for start in range(0, n, batch_size):  # streamed: only features and logits are kept
        zb, yb = z[start : start + batch_size], y_gen[start : start + batch_size]
        images = generate(zb, yb if cfg.conditional else None)
        if first_samples is None:
            first_samples = images[:SAMPLE_GRID].numpy()
        logits, feats = classify(images)
        gen_logits.append(logits)
        gen_feats.append(feats)
    gen_logits_np, gen_feats_np = np.concatenate(gen_logits), np.concatenate(gen_feats)
    floor_idx = _subset(seed, _STREAM_FLOOR, len(train_x), min(n, len(test_x)))
    _, floor_feats = classify(train_x[floor_idx])
    generation = {
        "n": n,
        "label_accuracy": (
            label_accuracy(gen_logits_np, y_gen.numpy()) if cfg.conditional else None
        ),
        "real_label_accuracy": real_accuracy,
        "fid": frechet_distance(gen_feats_np, test_feats),
        "fid_floor": frechet_distance(floor_feats, test_feats),
        "fid_floor_n": len(floor_idx),
        "fid_reference_n": len(test_x),
    }

    # Encoder: linear probes on E(x) and on pixels; reconstructions of real test images.
    probe_idx = _subset(seed, _STREAM_PROBE, len(train_x), probe_train)
    probe_x, probe_y = train_x[probe_idx], train_y[probe_idx].numpy()
    z_test = encode(test_x)
    probe = linear_probe(
        encode(probe_x).numpy(), probe_y, z_test.numpy(), test_y.numpy(), seed=seed
    )
    pixel_probe = linear_probe(
        probe_x.flatten(1).numpy(), probe_y, test_x.flatten(1).numpy(), test_y.numpy(), seed=seed
    )
    recon_idx = _subset(seed, _STREAM_RECON, len(test_x), n)
    recon_y = test_y[recon_idx]
    recon = generate(z_test[recon_idx], recon_y if cfg.conditional else None)
    recon_logits, _ = classify(recon)
    encoder = {
        "probe_accuracy": probe,
        "pixel_probe_accuracy": pixel_probe,
        "probe_train": len(probe_idx),
        "probe_test": len(test_x),
        "reconstruction_n": len(recon_idx),
        "reconstruction_mae": mean_abs_error(recon.numpy(), test_x[recon_idx].numpy()),
        "reconstruction_label_accuracy": label_accuracy(recon_logits, recon_y.numpy()),
        "real_label_accuracy": real_accuracy,
    }

    body: dict[str, Any] = {
        "checkpoint": str(ckpt.directory),
        "step": ckpt.step,
        "dataset": dataset,
        "conditional": cfg.conditional,
        "seed": seed,
        "classifier": {
            "path": str(cls_path),
            "test_accuracy": real_accuracy,
            "feature_dim": clf_info.config.feature_dim,
        },
        "generation": generation,
        "encoder": encoder,
    }
    result = document(EVALUATION_FORMAT, body)
    if out_dir is not None:
        out = ensure_dir(out_dir)
        grid_idx = _first_of_each_class(test_y, min(GRID_IMAGES, len(test_x)))
        grid_y = test_y[grid_idx]
        grid_recon = generate(z_test[grid_idx], grid_y if cfg.conditional else None)
        save_labelled_rows(
            [test_x[grid_idx].numpy(), grid_recon.numpy()],
            ["real", "reconstruction"],
            out / RECONSTRUCTIONS_FILE,
        )
        assert first_samples is not None
        save_grid(first_samples, out / SAMPLES_FILE, ncol=min(cfg.num_classes, SAMPLE_GRID))
        result["files"] = {
            "evaluation": EVALUATION_FILE,
            "reconstructions": RECONSTRUCTIONS_FILE,
            "samples": SAMPLES_FILE,
        }
        write_text(out / EVALUATION_FILE, json.dumps(result, indent=2) + "\n")  # header in it
    return result


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_report(result: dict[str, Any]) -> str:
    """The human-readable table: each model number beside the reference it should approach."""
    gen, enc, clf = result["generation"], result["encoder"], result["classifier"]
    kind = "conditional" if result["conditional"] else "unconditional"
    rows = [
        (
            "generation",
            "label accuracy of G(z, y)",
            _fmt(gen["label_accuracy"]),
            _fmt(gen["real_label_accuracy"]),
            "classifier on real test images"
            + ("" if result["conditional"] else " (unconditional: no labels)"),
        ),
        (
            "",
            "classifier-feature FID",
            _fmt(gen["fid"], 3),
            _fmt(gen["fid_floor"], 3),
            f"floor: {gen['fid_floor_n']} real train vs {gen['fid_reference_n']} real test",
        ),
        (
            "encoder",
            "linear probe on E(x)",
            _fmt(enc["probe_accuracy"]),
            _fmt(enc["pixel_probe_accuracy"]),
            f"same probe on raw pixels (train {enc['probe_train']}, test {enc['probe_test']})",
        ),
        (
            "",
            "reconstruction MAE |x - G(E(x))|",
            _fmt(enc["reconstruction_mae"]),
            "",
            f"{enc['reconstruction_n']} real test images, pixels in [0, 1]",
        ),
        (
            "",
            "label accuracy of G(E(x), y)",
            _fmt(enc["reconstruction_label_accuracy"]),
            _fmt(enc["real_label_accuracy"]),
            "classifier on real test images",
        ),
    ]
    header = ("", "metric", "model", "reference", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

    def line(r: tuple[str, ...]) -> str:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [r[2].rjust(widths[2]), r[3].rjust(widths[3]), r[4]]
        return "  ".join(cells).rstrip()

    lines = [
        f"{result['checkpoint']} (step {result['step']}): {result['dataset']}, {kind}, "
        f"n={gen['n']}, seed {result['seed']}",
        f"classifier {clf['path']} (test accuracy {clf['test_accuracy']:.4f}, "
        f"{clf['feature_dim']}-d features)",
        "",
        line(header),
        *[line(r) for r in rows],
    ]
    if "files" in result:
        lines += ["", "wrote " + ", ".join(result["files"].values())]
    return "\n".join(lines)
