"""The numeric core of `bigbigan compare`: summaries, pair statistics, tolerance checks.

Pure numpy, computed in float64. Two conventions hold throughout:
- equal values count as zero difference, so matching infinities (`inf` vs `inf`) agree, as in
  `numpy.isclose`;
- NaN never passes: any NaN in either array makes `check_tolerance` fail.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from bigbigan.errors import BigBiGANError
from bigbigan.interface import format_shape

STATISTICS = ("elementwise", "max", "mean", "median", "quantile")
REL_EPS = 1e-12  # guards the relative difference where the reference is 0


def _pair(ref: npt.ArrayLike, other: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64 of one non-empty shape, else a one-line error."""
    r = np.asarray(ref, dtype=np.float64)
    o = np.asarray(other, dtype=np.float64)
    if r.shape != o.shape:
        raise BigBiGANError(
            f"shapes differ: reference {format_shape(r.shape)}, other {format_shape(o.shape)}"
        )
    if r.size == 0:
        raise BigBiGANError(f"nothing to compare: both arrays are empty ({format_shape(r.shape)})")
    return r, o


def _diff(r: np.ndarray, o: np.ndarray) -> np.ndarray:
    """`o - r`, with 0 where they are equal (so `inf - inf` is 0, not NaN)."""
    with np.errstate(invalid="ignore", over="ignore"):
        d = o - r
    d[o == r] = 0.0
    return d


def _percentile(x: np.ndarray, q: list[float]) -> list[float]:
    """Linear percentiles of `x`; an `inf - inf` interpolation between infinities gives inf."""
    with np.errstate(invalid="ignore"):
        values = [float(v) for v in np.percentile(x, q)]
    if np.isnan(x).any():
        return values
    return [math.inf if math.isnan(v) else v for v in values]


def summarize(a: npt.ArrayLike) -> dict[str, float]:
    """mean, std, min, max, p90, p99 of the finite values, and counts of NaN and Inf.

    Statistics are NaN when there is no finite value.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    finite = x[np.isfinite(x)]
    out: dict[str, float]
    if finite.size:
        p90, p99 = _percentile(finite, [90, 99])
        out = {
            "mean": float(finite.mean()),
            "std": float(finite.std()),
            "min": float(finite.min()),
            "max": float(finite.max()),
            "p90": p90,
            "p99": p99,
        }
    else:
        out = dict.fromkeys(("mean", "std", "min", "max", "p90", "p99"), math.nan)
    out["nan_count"] = int(np.isnan(x).sum())
    out["inf_count"] = int(np.isinf(x).sum())
    return out


def pair_stats(
    ref: npt.ArrayLike, other: npt.ArrayLike, *, data_range: float = 1.0
) -> dict[str, float]:
    """How far `other` is from `ref`: absolute, relative and signal-level statistics.

    `mean_diff` is `other.mean() - ref.mean()`; `psnr` is in dB against `data_range` (inf when
    identical); `cosine` treats two all-zero arrays as identical (1) and one as orthogonal (0);
    relative differences divide by `max(|ref|, REL_EPS)` and are summarised like the absolute
    ones (mean, median, p90, p99, max). NaN in the inputs gives NaN results.
    """
    r, o = _pair(ref, other)
    d = _diff(r, o).ravel()
    ad = np.abs(d)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        p50, p90, p99 = _percentile(ad, [50, 90, 99])
        mse = float(np.mean(d * d))
        psnr = math.inf if mse == 0.0 else float(10 * np.log10(data_range**2 / mse))
        rn, on = float(np.linalg.norm(r)), float(np.linalg.norm(o))
        if math.isnan(rn) or math.isnan(on):
            cosine = math.nan
        elif rn == 0.0 or on == 0.0:
            cosine = 1.0 if rn == on else 0.0
        else:
            cosine = float(np.dot(r.ravel(), o.ravel()) / (rn * on))
        rel = ad / np.maximum(np.abs(r.ravel()), REL_EPS)
        r50, r90, r99 = _percentile(rel, [50, 90, 99])
        return {
            "mean_abs_diff": float(ad.mean()),
            "max_abs_diff": float(ad.max()),
            "median_abs_diff": p50,
            "p90_abs_diff": p90,
            "p99_abs_diff": p99,
            "mean_diff": float(o.mean() - r.mean()),
            "rmse": math.sqrt(mse),
            "psnr": psnr,
            "cosine": cosine,
            "mean_rel_diff": float(rel.mean()),
            "median_rel_diff": r50,
            "p90_rel_diff": r90,
            "p99_rel_diff": r99,
            "max_rel_diff": float(rel.max()),
        }


def error_histogram(
    ref: npt.ArrayLike, other: npt.ArrayLike, bins: int = 10
) -> list[tuple[float, float, int]]:
    """`(lo, hi, count)` bins of `|ref - other|` from 0 to its finite maximum.

    A last bin `(nan, nan, count)` holds NaN/Inf differences, if any. When every finite
    difference is 0 there is a single bin `(0.0, 0.0, count)`.
    """
    if bins < 1:
        raise BigBiGANError(f"histogram bins must be at least 1, found {bins}")
    r, o = _pair(ref, other)
    ad = np.abs(_diff(r, o)).ravel()
    finite = ad[np.isfinite(ad)]
    top = float(finite.max()) if finite.size else 0.0
    if top == 0.0:
        hist = [(0.0, 0.0, int(finite.size))] if finite.size else []
    else:
        counts, edges = np.histogram(finite, bins=bins, range=(0.0, top))
        hist = [
            (float(lo), float(hi), int(c))
            for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
        ]
    if finite.size < ad.size:
        hist.append((math.nan, math.nan, int(ad.size - finite.size)))
    return hist


def text_histogram(hist: list[tuple[float, float, int]], width: int = 40) -> str:
    """One line per bin: `[lo, hi)  ####  count`, bars scaled to the largest count."""
    if not hist:
        return ""
    most = max(c for _, _, c in hist)
    digits = len(str(most))
    lines = []
    for i, (lo, hi, count) in enumerate(hist):
        if math.isnan(lo):
            label = "NaN/Inf".ljust(22)
        else:
            close = "]" if i == len(hist) - 1 or math.isnan(hist[i + 1][0]) else ")"
            label = f"[{lo:.3e}, {hi:.3e}{close}"
        bar = "#" * (max(1, round(count / max(most, 1) * width)) if count else 0)
        lines.append(f"{label}  {bar.ljust(width)}  {count:>{digits}}")
    return "\n".join(lines)


def check_tolerance(
    ref: npt.ArrayLike,
    other: npt.ArrayLike,
    *,
    atol: float,
    rtol: float,
    statistic: str = "elementwise",
    quantile: float = 0.99,
) -> tuple[bool, float]:
    """Whether `other` matches `ref`, and the smallest `atol` that would have passed.

    - `elementwise`: pass iff every `|o - r| <= atol + rtol * |r|` (`numpy.isclose`, in float64;
      tested as `|o - r| - rtol * |r| <= atol` so the returned minimum passes exactly). The
      minimum is `max(|o - r| - rtol * |r|)` clipped at 0. An infinite reference gets no `rtol`
      slack: it must be matched exactly.
    - `max` / `mean` / `median` / `quantile`: reduce `|o - r|` with the statistic (`quantile`
      is the `quantile`-th, e.g. 0.99) and pass iff it is `<= atol`; the minimum is that value.
      `rtol` is ignored: a reduced difference has no single reference value to scale by.

    Any NaN fails, with minimum NaN (no tolerance passes).
    """
    if statistic not in STATISTICS:
        raise BigBiGANError(
            f"statistic must be one of {', '.join(STATISTICS)}, found {statistic!r}"
        )
    if not 0.0 <= quantile <= 1.0:
        raise BigBiGANError(f"quantile must be in [0, 1], found {quantile}")
    if not (atol >= 0 and rtol >= 0):
        raise BigBiGANError(f"tolerances must be non-negative, found atol={atol}, rtol={rtol}")
    r, o = _pair(ref, other)
    ad = np.abs(_diff(r, o))
    if np.isnan(ad).any():
        return False, math.nan
    if statistic == "elementwise":
        with np.errstate(invalid="ignore", over="ignore"):
            slack = np.where(np.isfinite(r), rtol * np.abs(r), 0.0)
            excess = ad - slack
        excess[np.isinf(ad)] = math.inf  # an infinite difference stays infinite
        needed = max(0.0, float(excess.max()))
    elif statistic == "max":
        needed = float(ad.max())
    elif statistic == "mean":
        needed = float(ad.mean())
    else:
        (needed,) = _percentile(ad, [50.0 if statistic == "median" else 100.0 * quantile])
    return needed <= atol, needed


def error_map(ref: npt.ArrayLike, other: npt.ArrayLike) -> np.ndarray:
    """Per-pixel mean absolute error of NHWC image batches, over the batch and the channels:
    `(N, H, W, C)` -> `(H, W)` (a `(N, H, W)` batch is one channel). NaN/Inf differences are
    counted as NaN, so a broken pixel shows up rather than hiding in a finite mean."""
    r, o = _pair(ref, other)
    if r.ndim == 3:
        r, o = r[..., None], o[..., None]
    if r.ndim != 4:
        raise BigBiGANError(
            f"an error map needs image batches (N, H, W[, C]), found {format_shape(r.shape)}"
        )
    return np.abs(_diff(r, o)).mean(axis=(0, 3))


def _nanmax(a: float, b: float) -> float:
    """max that propagates NaN, like `np.max`."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def streamed_compare(
    ref: npt.ArrayLike,
    other: npt.ArrayLike,
    *,
    atol: float,
    rtol: float,
    statistic: str = "elementwise",
    quantile: float = 0.99,
    chunk: int = 1 << 22,
) -> tuple[dict[str, float], bool, float]:
    """`pair_stats`' max/mean absolute, RMSE, cosine and max relative difference, with the
    `check_tolerance` verdict, for arrays too big to copy whole into float64 several times:
    the work is done `chunk` elements at a time, with the same conventions and results.

    Returns (stats, passed, needed). `median`/`quantile` need every difference at once and fall
    back to `check_tolerance` on the whole arrays.
    """
    if statistic not in STATISTICS:
        raise BigBiGANError(
            f"statistic must be one of {', '.join(STATISTICS)}, found {statistic!r}"
        )
    if not (atol >= 0 and rtol >= 0):
        raise BigBiGANError(f"tolerances must be non-negative, found atol={atol}, rtol={rtol}")
    r_all, o_all = np.asarray(ref), np.asarray(other)
    if r_all.shape != o_all.shape:
        raise BigBiGANError(
            f"shapes differ: reference {format_shape(r_all.shape)}, "
            f"other {format_shape(o_all.shape)}"
        )
    if r_all.size == 0:
        raise BigBiGANError(
            f"nothing to compare: both arrays are empty ({format_shape(r_all.shape)})"
        )
    r_flat, o_flat = r_all.reshape(-1), o_all.reshape(-1)
    max_abs = sum_abs = sum_sq = dot = rr = oo = max_rel = needed = 0.0
    by_chunk = statistic in ("elementwise", "max")  # a max over chunks is the max over all
    for start in range(0, r_flat.size, chunk):
        r = r_flat[start : start + chunk].astype(np.float64)
        o = o_flat[start : start + chunk].astype(np.float64)
        ad = np.abs(_diff(r, o))
        with np.errstate(invalid="ignore", over="ignore"):
            max_abs = _nanmax(max_abs, float(ad.max()))
            sum_abs += float(ad.sum())
            sum_sq += float(np.dot(ad, ad))
            dot += float(np.dot(r, o))
            rr += float(np.dot(r, r))
            oo += float(np.dot(o, o))
            max_rel = _nanmax(max_rel, float((ad / np.maximum(np.abs(r), REL_EPS)).max()))
        if by_chunk:
            _, part = check_tolerance(r, o, atol=atol, rtol=rtol, statistic=statistic)
            needed = _nanmax(needed, part)
    n = r_flat.size
    rn, on = math.sqrt(rr), math.sqrt(oo)
    if math.isnan(rn) or math.isnan(on):
        cosine = math.nan
    elif rn == 0.0 or on == 0.0:
        cosine = 1.0 if rn == on else 0.0
    else:
        cosine = dot / (rn * on)
    stats = {
        "max_abs_diff": max_abs,
        "mean_abs_diff": sum_abs / n,
        "rmse": math.sqrt(sum_sq / n),
        "cosine": cosine,
        "max_rel_diff": max_rel,
    }
    if statistic == "mean":
        needed = stats["mean_abs_diff"]
    elif not by_chunk:
        passed, needed = check_tolerance(
            r_all, o_all, atol=atol, rtol=rtol, statistic=statistic, quantile=quantile
        )
        return stats, passed, needed
    return stats, bool(needed <= atol), needed
