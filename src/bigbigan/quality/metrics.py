"""Evaluation metrics as pure functions of arrays: no models, no files.

- `frechet_distance`: the FID formula on any feature sets (here, the evaluation classifier's
  penultimate features rather than Inception's).
- `label_accuracy`: fraction of predictions (or logits' argmax) equal to the labels.
- `logistic_probe`: the paper's linear evaluation (docs/quality.md): multinomial logistic
  regression on standardised features, fitted by L-BFGS to convergence, L2 chosen on a
  held-out part of the training split; `knn_accuracy`: k-NN beside it; `bn_crelu`.
- `mean_abs_error`: mean |a - b| in float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
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


def _predictions(logits_or_preds: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, labels) as 1-d arrays: (N, K) scores are reduced by argmax, (N,) are taken
    as predictions."""
    scores = np.asarray(logits_or_preds)
    labels = np.asarray(labels).reshape(-1)
    preds = scores.argmax(axis=1) if scores.ndim == 2 else scores.reshape(-1)
    if preds.shape[0] != labels.shape[0]:
        raise BigBiGANError(
            f"label accuracy: {preds.shape[0]} predictions for {labels.shape[0]} labels"
        )
    if labels.size == 0:
        raise BigBiGANError("label accuracy: no labels")
    return preds, labels


def label_accuracy(logits_or_preds: ArrayLike, labels: ArrayLike) -> float:
    """Fraction correct; (N, K) scores are reduced by argmax, (N,) are taken as predictions."""
    preds, labels = _predictions(logits_or_preds, labels)
    return float(np.mean(preds == labels))


def confusion_matrix(logits_or_preds: ArrayLike, labels: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): row i, column j is how many items labelled i were
    predicted j, so that a generator's confusions can be read class by class."""
    preds, labels = _predictions(logits_or_preds, labels)
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), preds.astype(np.int64)), 1)
    return counts


def accuracy_by_class(confusion: np.ndarray) -> list[float | None]:
    """Each row's fraction on the diagonal; None for a class with no items."""
    totals = confusion.sum(axis=1)
    return [None if t == 0 else float(confusion[i, i] / t) for i, t in enumerate(totals)]


# The L2 strengths tried, strongest first: each fit starts from the previous one's solution.
L2_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
HOLDOUT_FRACTION = 1 / 6  # of the training split: 10,000 of Fashion-MNIST's 60,000
KNN_KS = (1, 5)
MAX_ITER = 1000  # L-BFGS iterations a fit
TOLERANCE = 1e-4  # on the largest gradient entry
# Everything the probes' results depend on besides the data and the seed (cache keys use it).
PROTOCOL = {
    "version": 2,  # 2: fits that stop short of the tolerance in float32 are finished in float64
    "l2_grid": L2_GRID,
    "holdout": HOLDOUT_FRACTION,
    "knn": KNN_KS,
    "max_iter": MAX_ITER,
    "tolerance": TOLERANCE,
}


def _probe_arrays(
    train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows as (N, D) float32 features and int64 labels, checked against each other."""
    xtr = np.asarray(train_x, np.float32).reshape(len(train_x), -1)
    xte = np.asarray(test_x, np.float32).reshape(len(test_x), -1)
    ytr = np.asarray(train_y).reshape(-1).astype(np.int64)
    yte = np.asarray(test_y).reshape(-1).astype(np.int64)
    if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
        raise BigBiGANError(
            f"{what}: {xtr.shape[0]}/{xte.shape[0]} train/test rows for "
            f"{ytr.shape[0]}/{yte.shape[0]} labels"
        )
    if xtr.shape[1] != xte.shape[1]:
        raise BigBiGANError(f"{what}: feature sizes differ ({xtr.shape[1]} vs {xte.shape[1]})")
    if len(np.unique(ytr)) < 2:
        raise BigBiGANError(f"{what}: the training labels hold fewer than 2 classes")
    if not (np.isfinite(xtr).all() and np.isfinite(xte).all()):
        raise BigBiGANError(f"{what}: features contain NaN or Inf")
    return xtr, ytr, xte, yte


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Zero mean, unit variance with the training rows' statistics (constant columns: left
    centred, not divided by zero), applied to every array given."""
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std[std < 1e-8] = 1.0
    return [((a - mean) / std).astype(np.float32) for a in (train, *others)]


def bn_crelu(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """BigBiGAN's best probe input: batch norm (the training rows' statistics, no affine), then
    CReLU, [relu(h), relu(-h)], which doubles the width."""
    return [
        np.concatenate([np.maximum(h, 0), np.maximum(-h, 0)], axis=1)
        for h in standardise(train, *others)
    ]


@dataclass(frozen=True)
class LogisticFit:
    weight: torch.Tensor  # (D, K)
    bias: torch.Tensor  # (K,)
    iterations: int
    converged: bool
    refined: bool = False  # finished in float64 (see fit_logistic)


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    l2: float,
    start: LogisticFit | None = None,
    max_iter: int = MAX_ITER,
    tolerance: float = TOLERANCE,
) -> LogisticFit:
    """Multinomial logistic regression, mean cross-entropy + l2/2 |W|^2 (bias unpenalised),
    by full-batch L-BFGS with a strong-Wolfe line search until the largest gradient entry is
    below `tolerance` (converged; 1e-4 is scikit-learn's default for the same mean loss) or
    `max_iter` iterations pass.

    The fit runs in float32; one that stops short of the tolerance there (its float32 loss can
    stall within a few 1e-4 of it over ~10^5 rows, or it meets the cap) is finished in float64
    from where it stopped, so that a probe is converged, not merely close."""
    fit = _lbfgs(x, y, num_classes, l2, start, max_iter, tolerance)
    if fit.converged:
        return fit
    as64 = LogisticFit(fit.weight.double(), fit.bias.double(), fit.iterations, False)
    finished = _lbfgs(x.double(), y, num_classes, l2, as64, max_iter, tolerance)
    return LogisticFit(
        finished.weight.float(),
        finished.bias.float(),
        fit.iterations + finished.iterations,
        finished.converged,
        refined=True,
    )


def _lbfgs(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    l2: float,
    start: LogisticFit | None,
    max_iter: int,
    tolerance: float,
) -> LogisticFit:
    """`fit_logistic`'s L-BFGS in the dtype of `x` (and of `start`, when given)."""
    if start is None:
        zeros = torch.zeros(x.shape[1], num_classes, dtype=x.dtype)
        start = LogisticFit(zeros, torch.zeros(num_classes, dtype=x.dtype), 0, False)
    weight = start.weight.clone().requires_grad_()
    bias = start.bias.clone().requires_grad_()
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1,
        max_iter=max_iter,
        max_eval=4 * max_iter,  # the line search may evaluate several times an iteration
        history_size=20,
        tolerance_grad=tolerance,
        tolerance_change=0.0,  # stop on the gradient only (or max_iter, or a stalled loss)
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y)
        loss = loss + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    iterations = int(optimizer.state[weight]["n_iter"])
    closure()
    with torch.no_grad():
        peak = max(weight.grad.abs().max().item(), bias.grad.abs().max().item())
    return LogisticFit(weight.detach(), bias.detach(), iterations, peak <= tolerance)


def _accuracy(fit: LogisticFit, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((x @ fit.weight + fit.bias).argmax(1) == y).float().mean())


def logistic_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    *,
    seed: int = 0,
    l2_grid: Sequence[float] = L2_GRID,
    holdout: float = HOLDOUT_FRACTION,
    max_iter: int = MAX_ITER,
) -> dict[str, Any]:
    """The paper's linear evaluation: a multinomial logistic regression on standardised features
    (statistics of the training split), its L2 strength chosen by accuracy on a held-out
    `holdout` fraction of the training split (a seeded draw), then refitted on the whole
    training split and scored on the test split.

    Returns {"accuracy", "l2", "holdout_accuracy" {l2: acc}, "iterations", "converged",
    "refined" (whether any fit was finished in float64)}.
    """
    xtr, ytr, xte, yte = _probe_arrays(train_x, train_y, test_x, test_y, "logistic probe")
    if not 0 < holdout < 1:
        raise BigBiGANError(f"logistic probe: holdout {holdout} not in (0, 1)")
    num_classes = int(max(ytr.max(), yte.max())) + 1
    xtr, xte = standardise(xtr, xte)
    order = np.random.default_rng([seed, 7]).permutation(len(xtr))
    n_held = max(1, int(round(len(xtr) * holdout)))
    held, fit_rows = np.sort(order[:n_held]), np.sort(order[n_held:])
    x_all, y_all = torch.from_numpy(xtr), torch.from_numpy(ytr)
    x_fit, y_fit, x_held, y_held = x_all[fit_rows], y_all[fit_rows], x_all[held], y_all[held]
    scores: dict[float, float] = {}
    fits: dict[float, LogisticFit] = {}
    fit = None
    for l2 in sorted(l2_grid, reverse=True):  # strongest first: warm starts along the path
        fit = fit_logistic(x_fit, y_fit, num_classes, l2, fit, max_iter)
        fits[l2], scores[l2] = fit, _accuracy(fit, x_held, y_held)
    best = max(scores, key=lambda l2: (scores[l2], l2))  # ties: the stronger penalty
    final = fit_logistic(x_all, y_all, num_classes, best, fits[best], max_iter)
    return {
        "accuracy": _accuracy(final, torch.from_numpy(xte), torch.from_numpy(yte)),
        "l2": best,
        "holdout_accuracy": {f"{l2:g}": round(acc, 6) for l2, acc in scores.items()},
        "iterations": final.iterations + sum(f.iterations for f in fits.values()),
        "converged": final.converged and all(f.converged for f in fits.values()),
        "refined": final.refined or any(f.refined for f in fits.values()),
    }


def knn_accuracy(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    ks: Sequence[int] = KNN_KS,
    chunk: int = 500,
) -> dict[int, float]:
    """Test accuracy of k-nearest-neighbour votes (Euclidean, on features standardised with the
    training split's statistics) for each k; a tied vote goes to the class of the nearer
    neighbours."""
    xtr, ytr, xte, yte = _probe_arrays(train_x, train_y, test_x, test_y, "k-NN")
    if not ks or min(ks) < 1 or max(ks) > len(xtr):
        raise BigBiGANError(f"k-NN: k {list(ks)} must lie in 1..{len(xtr)} (training rows)")
    xtr, xte = standardise(xtr, xte)
    train_t, labels = torch.from_numpy(xtr), torch.from_numpy(ytr)
    sq_train = train_t.square().sum(1)
    num_classes, kmax = int(ytr.max()) + 1, max(ks)
    correct = dict.fromkeys(ks, 0)
    for start in range(0, len(xte), chunk):
        block = torch.from_numpy(xte[start : start + chunk])
        distances = sq_train[None, :] - 2 * block @ train_t.T  # + |block|^2: same for a row
        nearest = labels[distances.topk(kmax, dim=1, largest=False).indices]  # (B, kmax)
        truth = torch.from_numpy(yte[start : start + chunk])
        for k in ks:
            # one vote each, plus less than one vote in total by rank: ties go to the nearer
            rank_bonus = torch.linspace(1e-3, 1e-6, k)
            votes = torch.zeros(len(block), num_classes)
            votes.scatter_add_(1, nearest[:, :k], 1 + rank_bonus.expand(len(block), k))
            correct[k] += int((votes.argmax(1) == truth).sum())
    return {k: correct[k] / len(xte) for k in ks}


def mean_abs_error(a: ArrayLike, b: ArrayLike) -> float:
    """Mean |a − b| over all elements, computed in float64; shapes must match."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        raise BigBiGANError(f"mean abs error: shapes differ ({a64.shape} vs {b64.shape})")
    return float(np.mean(np.abs(a64 - b64)))
