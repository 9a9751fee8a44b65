"""Evaluation metrics as pure functions of arrays: no models, no files.

- `frechet_distance`: the FID formula on any feature sets (here, the evaluation classifier's
  penultimate features rather than Inception's).
- `label_accuracy`: fraction of predictions (or logits' argmax) equal to the labels.
- `linear_probe`: test accuracy of a logistic regression on standardised features.
- `mean_abs_error`: mean |a - b| in float64.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike
from threadpoolctl import threadpool_limits

from bigbigan.errors import BigBiGANError

_SQRTM_EPS = 1e-6  # added to the diagonals when the product's square root is not finite
_IMAG_ATOL = 1e-3  # larger imaginary parts in sqrtm mean a numerical failure, not noise


def _one_blas_thread() -> threadpool_limits:
    """These problems are small; threaded BLAS on a busy CPU makes L-BFGS ~100x slower."""
    return threadpool_limits(limits=1, user_api="blas")


def _features(name: str, x: ArrayLike) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise BigBiGANError(f"{name}: expected (N >= 2, D) features, found shape {x.shape}")
    if not np.isfinite(x).all():
        raise BigBiGANError(f"{name}: features contain NaN or Inf")
    return x


def gaussian_stats(feats: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, in float64."""
    x = _features("features", feats)
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance_from_stats(
    mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray
) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½), the usual guards around the square root."""
    from scipy import linalg

    diff = mu_a - mu_b
    with _one_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm warns on singular products; handled below
        covmean = linalg.sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(covmean).all():  # singular product: nudge both diagonals and retry
        offset = np.eye(sigma_a.shape[0]) * _SQRTM_EPS
        with _one_blas_thread(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            covmean = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=_IMAG_ATOL):
            peak = float(np.max(np.abs(covmean.imag)))
            raise BigBiGANError(f"Frechet distance: sqrtm has imaginary component {peak:.3g}")
        covmean = covmean.real
    value = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean)
    return max(float(value), 0.0)  # rounding can take identical sets a hair below zero


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets (same D)."""
    a, b = _features("feats_a", feats_a), _features("feats_b", feats_b)
    if a.shape[1] != b.shape[1]:
        raise BigBiGANError(
            f"Frechet distance: feature sizes differ ({a.shape[1]} vs {b.shape[1]})"
        )
    return frechet_distance_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def label_accuracy(logits_or_preds: ArrayLike, labels: ArrayLike) -> float:
    """Fraction correct; (N, K) scores are reduced by argmax, (N,) are taken as predictions."""
    scores = np.asarray(logits_or_preds)
    labels = np.asarray(labels).reshape(-1)
    preds = scores.argmax(axis=1) if scores.ndim == 2 else scores.reshape(-1)
    if preds.shape[0] != labels.shape[0]:
        raise BigBiGANError(
            f"label accuracy: {preds.shape[0]} predictions for {labels.shape[0]} labels"
        )
    if labels.size == 0:
        raise BigBiGANError("label accuracy: no labels")
    return float(np.mean(preds == labels))


def linear_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    *,
    seed: int = 0,
    max_iter: int = 2000,
    c: float = 1.0,
) -> float:
    """Test accuracy of a multinomial logistic regression trained on standardised features.

    The standardisation (mean, std) is fitted on the training features only.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    xtr = np.asarray(train_x, np.float64).reshape(len(train_x), -1)
    xte = np.asarray(test_x, np.float64).reshape(len(test_x), -1)
    ytr, yte = np.asarray(train_y).reshape(-1), np.asarray(test_y).reshape(-1)
    if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
        raise BigBiGANError(
            f"linear probe: {xtr.shape[0]}/{xte.shape[0]} train/test rows for "
            f"{ytr.shape[0]}/{yte.shape[0]} labels"
        )
    if xtr.shape[1] != xte.shape[1]:
        raise BigBiGANError(
            f"linear probe: feature sizes differ ({xtr.shape[1]} vs {xte.shape[1]})"
        )
    if len(np.unique(ytr)) < 2:
        raise BigBiGANError("linear probe: the training labels hold fewer than 2 classes")
    scaler = StandardScaler().fit(xtr)
    probe = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    with _one_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter bounds the time
        probe.fit(scaler.transform(xtr), ytr)
    return float(np.mean(probe.predict(scaler.transform(xte)) == yte))


def mean_abs_error(a: ArrayLike, b: ArrayLike) -> float:
    """Mean |a − b| over all elements, computed in float64; shapes must match."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        raise BigBiGANError(f"mean abs error: shapes differ ({a64.shape} vs {b64.shape})")
    return float(np.mean(np.abs(a64 - b64)))
