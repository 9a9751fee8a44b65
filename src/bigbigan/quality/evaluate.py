"""`bigbigan evaluate`: how good is a trained BigBiGAN, each number next to its reference.

For the checkpoint's dataset, with the evaluation classifier (`bigbigan.quality.classifier`):
- generation: the classifier's label accuracy on G(z, y) against y (conditional models), next to
  its accuracy on the real test images; the Fréchet distance between classifier features of n
  generated images and of the real test set, next to its floor (a real-train subset of the same
  size against the real test set);
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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
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
from bigbigan.quality.metrics import PROTOCOL as PROBE_PROTOCOL
from bigbigan.quality.metrics import (
    bn_crelu,
    frechet_distance,
    knn_accuracy,
    label_accuracy,
    logistic_probe,
    mean_abs_error,
)
from bigbigan.shipped import MODELS_DIR
from bigbigan.training.checkpoint import load_model
from bigbigan.training.data import load_dataset
from bigbigan.training.sampling import class_labels, truncated_normal

EVALUATION_FILE = "evaluation.json"
EVALUATION_FORMAT = "bigbigan-evaluation"
RECONSTRUCTIONS_FILE = "reconstructions.png"
SAMPLES_FILE = "samples.png"
# Where a dataset's files come from when they are missing (named in the result).
INSTALL_HINTS = {"fashion_mnist": "apt-get install dataset-fashion-mnist"}
# The probes' inputs, in report order: key -> what the report calls it.
PROBE_FEATURES = {
    "pixels": "raw pixels",
    "z": "E's z (mu)",
    "trunk": "E's pooled trunk",
    "trunk_bn_crelu": "BN+CReLU(trunk)",
}
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


def _load_real(
    dataset: str, data_dir: str | None
) -> tuple[tuple[torch.Tensor, ...] | None, str | None]:
    """(train_x, train_y, test_x, test_y), or None and why not (naming what to install)."""
    try:
        train_x, train_y = load_dataset(dataset, "train", data_dir)
        test_x, test_y = load_dataset(dataset, "test", data_dir)
    except BigBiGANError as e:
        hint = INSTALL_HINTS.get(dataset)
        fix = f"`{hint}` or pass --data-dir" if hint else "pass --data-dir"
        return None, f"{e}; metrics that need real {dataset} images skipped ({fix})"
    return (train_x, train_y, test_x, test_y), None


def default_cache_dir() -> Path:
    """Where model-independent results (the pixel probes) are kept: $BIGBIGAN_CACHE, else
    ~/.cache/bigbigan."""
    return Path(os.environ.get("BIGBIGAN_CACHE", Path.home() / ".cache" / "bigbigan"))


def cached_probe_suite(
    train_feats: np.ndarray,
    train_y: np.ndarray,
    test_feats: np.ndarray,
    test_y: np.ndarray,
    seed: int,
    cache_dir: Path | None,
) -> tuple[dict[str, Any], bool]:
    """`probe_suite`, kept in `cache_dir` under a sha256 of the arrays, the seed and the probe
    protocol, so that a result is reused only for the same inputs; (result, whether it was
    cached). The raw-pixel probes depend on no model and are most of evaluate's time."""
    if cache_dir is None:
        return probe_suite(train_feats, train_y, test_feats, test_y, seed), False
    key = hashlib.sha256(json.dumps({"seed": seed, "protocol": PROBE_PROTOCOL}).encode())
    for array in (train_feats, train_y, test_feats, test_y):
        key.update(str((array.dtype.str, array.shape)).encode())
        key.update(np.ascontiguousarray(array).tobytes())
    path = cache_dir / f"probe_{key.hexdigest()}.json"
    try:
        return json.loads(path.read_text()), True
    except (OSError, ValueError):
        pass
    result = probe_suite(train_feats, train_y, test_feats, test_y, seed)
    with contextlib.suppress(OSError, BigBiGANError):  # unwritable: time next run, nothing else
        write_text(ensure_dir(cache_dir) / path.name, json.dumps(result) + "\n")
    return result, False


def probe_suite(
    train_feats: np.ndarray,
    train_y: np.ndarray,
    test_feats: np.ndarray,
    test_y: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    """The logistic probe and k-NN (k = 1, 5) on one kind of features."""
    logistic = logistic_probe(train_feats, train_y, test_feats, test_y, seed=seed)
    knn = knn_accuracy(train_feats, train_y, test_feats, test_y)
    return {
        "dim": int(train_feats.shape[1]),
        "logistic": logistic["accuracy"],
        **{f"knn{k}": acc for k, acc in knn.items()},
        "l2": logistic["l2"],
        "holdout_accuracy": logistic["holdout_accuracy"],
        "iterations": logistic["iterations"],
        "converged": logistic["converged"],
    }


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
) -> dict[str, Any]:
    """Evaluate a checkpoint on its dataset; see the module docstring. Returns nested sections
    ("generation", "encoder") plus what was evaluated; writes `evaluation.json` and PNG grids
    to `out_dir` when given. `probe_train` fits the probes on a seeded subset of the training
    split (tests); by default they use all of it. `live_weights` evaluates the trained G and E
    of a checkpoint that also keeps EMA copies (which are evaluated by default). The pixel
    probes are cached in `cache_dir` (default: `default_cache_dir()`; None: not cached)."""
    started = time.perf_counter()
    if n < 2:
        raise BigBiGANError(f"--n {n}: expected at least 2 (a covariance needs two samples)")
    if batch_size <= 0:
        raise BigBiGANError(f"--batch-size {batch_size}: expected a positive integer")
    if probe_train is not None and probe_train < 2:
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
    real, missing = _load_real(dataset, data_dir)
    generator, encoder_net = (
        (model.G, model.E) if live_weights else (model.generator, model.encoder)
    )
    ema = cfg.ema and not live_weights

    def classify(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return classifier_module.predict_batched(clf, images, batch_size, device)

    def generate(z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return _batched(generator, [z, y], batch_size, device)

    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, pooled trunk features) of real images; z is mu for a stochastic encoder."""
        trunk = _batched(encoder_net.features, [x], batch_size, device)
        return _batched(encoder_net.latent, [trunk], batch_size, device), trunk

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
    label_acc = label_accuracy(gen_logits_np, y_gen.numpy()) if cfg.conditional else None
    real_accuracy = clf_info.test_accuracy
    generation: dict[str, Any] = {"n": n, "label_accuracy": label_acc}
    encoder: dict[str, Any] = {}
    if real is not None:
        train_x, train_y, test_x, test_y = real
        # Real test images: the reference for every number below.
        test_logits, test_feats = classify(test_x)
        real_accuracy = label_accuracy(test_logits, test_y.numpy())
        floor_idx = _subset(seed, _STREAM_FLOOR, len(train_x), min(n, len(test_x)))
        _, floor_feats = classify(train_x[floor_idx])
        generation |= {
            "fid": frechet_distance(gen_feats_np, test_feats),
            "fid_floor": frechet_distance(floor_feats, test_feats),
            "fid_floor_n": len(floor_idx),
            "fid_reference_n": len(test_x),
        }

        # Encoder: probes on pixels and E's features; reconstructions of real test images.
        if probe_train is not None:
            probe_idx = _subset(seed, _STREAM_PROBE, len(train_x), probe_train)
            train_x, train_y = train_x[probe_idx], train_y[probe_idx]
        z_train, trunk_train = encode(train_x)
        z_test, trunk_test = encode(test_x)
        features = {
            "pixels": (train_x.flatten(1).numpy(), test_x.flatten(1).numpy()),
            "z": (z_train.numpy(), z_test.numpy()),
            "trunk": (trunk_train.numpy(), trunk_test.numpy()),
            "trunk_bn_crelu": tuple(bn_crelu(trunk_train.numpy(), trunk_test.numpy())),
        }
        pixels_tr, pixels_te = features.pop("pixels")
        cache = default_cache_dir() if cache_dir == "default" else cache_dir
        pixel_probe, pixels_cached = cached_probe_suite(
            pixels_tr,
            train_y.numpy(),
            pixels_te,
            test_y.numpy(),
            seed,
            None if cache is None else Path(cache),
        )
        probes = {"pixels": pixel_probe} | {
            name: probe_suite(tr, train_y.numpy(), te, test_y.numpy(), seed)
            for name, (tr, te) in features.items()
        }
        recon_idx = _subset(seed, _STREAM_RECON, len(test_x), n)
        recon_y = test_y[recon_idx]
        recon = generate(z_test[recon_idx], recon_y if cfg.conditional else None)
        recon_logits, _ = classify(recon)
        encoder = {
            "probe_accuracy": probes["z"]["logistic"],
            "pixel_probe_accuracy": probes["pixels"]["logistic"],
            "best_feature_probe": max(
                (p["logistic"], name) for name, p in probes.items() if name != "pixels"
            )[1],
            "probes": probes,
            "pixel_probes_cached": pixels_cached,
            "probe_train": len(train_x),
            "probe_test": len(test_x),
            "reconstruction_n": len(recon_idx),
            "reconstruction_mae": mean_abs_error(recon.numpy(), test_x[recon_idx].numpy()),
            "reconstruction_label_accuracy": label_accuracy(recon_logits, recon_y.numpy()),
        }
    generation["real_label_accuracy"] = real_accuracy
    if encoder:
        encoder["real_label_accuracy"] = real_accuracy

    body: dict[str, Any] = {
        "checkpoint": str(ckpt.directory),
        "step": ckpt.step,
        "dataset": dataset,
        "conditional": cfg.conditional,
        "ema": ema,
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
        files = {"evaluation": EVALUATION_FILE, "samples": SAMPLES_FILE}
        if real is not None:
            test_x, test_y = real[2], real[3]
            grid_idx = _first_of_each_class(test_y, min(GRID_IMAGES, len(test_x)))
            grid_y = test_y[grid_idx]
            grid_recon = generate(z_test[grid_idx], grid_y if cfg.conditional else None)
            save_labelled_rows(
                [test_x[grid_idx].numpy(), grid_recon.numpy()],
                ["real", "reconstruction"],
                out / RECONSTRUCTIONS_FILE,
            )
            files["reconstructions"] = RECONSTRUCTIONS_FILE
        assert first_samples is not None
        save_grid(first_samples, out / SAMPLES_FILE, ncol=min(cfg.num_classes, SAMPLE_GRID))
        result["files"] = files
    result["seconds"] = round(time.perf_counter() - started, 1)
    if out_dir is not None:
        write_text(Path(out_dir) / EVALUATION_FILE, json.dumps(result, indent=2) + "\n")
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
    ]
    if "fid" in gen:
        rows.append(
            (
                "",
                "classifier-feature FID",
                _fmt(gen["fid"], 3),
                _fmt(gen["fid_floor"], 3),
                f"floor: {gen['fid_floor_n']} real train vs {gen['fid_reference_n']} real test",
            )
        )
    if enc is not None:
        pixels = enc["probes"]["pixels"]

        def triple(p: dict[str, Any]) -> str:
            return f"{p['logistic']:.4f} / {p['knn1']:.4f} / {p['knn5']:.4f}"

        for i, (name, label) in enumerate(PROBE_FEATURES.items()):
            probe = enc["probes"][name]
            rows.append(
                (
                    "encoder" if i == 0 else "",
                    f"{label} ({probe['dim']}-d): logistic / 1-NN / 5-NN",
                    triple(probe),
                    "" if name == "pixels" else triple(pixels),
                    f"L2 {probe['l2']:g}" + ("" if probe["converged"] else ", NOT converged"),
                )
            )
        rows += [
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
        f"{result['checkpoint']} (step {result['step']}): {result['dataset']}, {kind}"
        f"{', EMA weights' if result['ema'] else ''}, n={gen['n']}, seed {result['seed']}",
        f"classifier {clf['path']} (test accuracy {_fmt(clf['test_accuracy'])}, "
        f"{clf['feature_dim']}-d features)",
        "",
        line(header),
        *[line(r) for r in rows],
    ]
    if enc is not None:
        lines += [
            "",
            f"probes: fitted on {enc['probe_train']} training images (L2 chosen on a held-out "
            f"sixth), scored on {enc['probe_test']} test images; reference: raw pixels",
        ]
    if result["missing"]:
        lines += ["", result["missing"]]
    if "files" in result:
        lines += ["", "wrote " + ", ".join(result["files"].values())]
    lines.append(f"took {result['seconds']:.0f} s")
    return "\n".join(lines)
