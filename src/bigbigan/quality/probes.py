"""The encoder's representation, measured the paper's way (docs/quality.md): a logistic probe
and k-NN (k = 1, 5) on each kind of features, next to the same probes on raw pixels.

The raw-pixel probes depend on no model and take most of `evaluate`'s time, so their result is
cached under a digest of the inputs, the seed and the probe protocol.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir, write_text
from bigbigan.quality.metrics import PROTOCOL as PROBE_PROTOCOL
from bigbigan.quality.metrics import bn_crelu, knn_accuracy, logistic_probe

# The probes' inputs, in report order: key -> what the report calls it.
PROBE_FEATURES = {
    "pixels": "raw pixels",
    "z": "E's z (mu)",
    "trunk": "E's pooled trunk",
    "trunk_bn_crelu": "BN+CReLU(trunk)",
}

Pair = tuple[np.ndarray, np.ndarray]  # (training split's rows, test split's rows)


def default_cache_dir() -> Path:
    """Where model-independent results (the pixel probes) are kept: $BIGBIGAN_CACHE, else
    ~/.cache/bigbigan."""
    return Path(os.environ.get("BIGBIGAN_CACHE", Path.home() / ".cache" / "bigbigan"))


def feature_probes(
    pixels: Pair,
    z: Pair,
    trunk: Pair,
    labels: Pair,
    seed: int,
    cache_dir: Path | None,
) -> tuple[dict[str, dict[str, Any]], bool]:
    """The probe suite on each of `PROBE_FEATURES` (BN+CReLU computed from `trunk`), keyed as
    there; and whether the pixel probes came from `cache_dir`."""
    train_y, test_y = labels
    trunk_bn_crelu = bn_crelu(*trunk)
    features = {"z": z, "trunk": trunk, "trunk_bn_crelu": (trunk_bn_crelu[0], trunk_bn_crelu[1])}
    pixel_probe, cached = cached_probe_suite(pixels[0], train_y, pixels[1], test_y, seed, cache_dir)
    probes = {"pixels": pixel_probe} | {
        name: probe_suite(tr, train_y, te, test_y, seed) for name, (tr, te) in features.items()
    }
    return probes, cached


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
        "refined": logistic["refined"],
    }
