"""Compare statistics on hand-made arrays whose answers are known (bigbigan.compare.statistics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bigbigan.compare.statistics import (
    STATISTICS,
    check_tolerance,
    error_histogram,
    error_map,
    pair_stats,
    streamed_compare,
    summarize,
    text_histogram,
)
from bigbigan.errors import BigBiGANError

N = 100


def one_off(value: float = 0.5, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """ref all zeros, other the same but one element `value`."""
    ref = np.zeros(n, np.float32)
    other = ref.copy()
    other[7] = value
    return ref, other


# --- summarize ---------------------------------------------------------------------------------


def test_summarize_known_values() -> None:
    s = summarize(np.arange(101, dtype=np.float32))  # 0..100
    assert s["mean"] == 50.0
    assert s["min"] == 0.0 and s["max"] == 100.0
    assert s["p90"] == pytest.approx(90.0) and s["p99"] == pytest.approx(99.0)
    assert s["std"] == pytest.approx(np.arange(101).std())
    assert s["nan_count"] == 0 and s["inf_count"] == 0


def test_summarize_counts_non_finite_and_skips_them() -> None:
    s = summarize(np.array([1.0, 3.0, np.nan, np.nan, np.inf, -np.inf]))
    assert s["nan_count"] == 2 and s["inf_count"] == 2
    assert s["mean"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0
    s = summarize(np.array([np.nan]))
    assert math.isnan(s["mean"]) and s["nan_count"] == 1
    s = summarize(np.zeros(0))
    assert math.isnan(s["max"]) and s["nan_count"] == 0


# --- pair_stats --------------------------------------------------------------------------------


def test_pair_stats_one_element_off() -> None:
    ref, other = one_off(0.5)
    s = pair_stats(ref, other)
    assert s["max_abs_diff"] == 0.5
    assert s["mean_abs_diff"] == pytest.approx(0.5 / N)
    assert s["median_abs_diff"] == 0.0
    assert s["p90_abs_diff"] == 0.0
    assert s["p99_abs_diff"] == pytest.approx(0.5 * (0.99 * (N - 1) - (N - 2)))  # 0.005
    assert s["mean_diff"] == pytest.approx(0.5 / N)
    assert s["rmse"] == pytest.approx(math.sqrt(0.25 / N))
    assert s["psnr"] == pytest.approx(10 * math.log10(N / 0.25))


def test_pair_stats_percentiles() -> None:
    ref = np.zeros(101)
    other = np.arange(101) / 100.0  # |diff| = 0, 0.01, ..., 1
    s = pair_stats(ref, -other)
    assert s["median_abs_diff"] == pytest.approx(0.5)
    assert s["p90_abs_diff"] == pytest.approx(0.9)
    assert s["p99_abs_diff"] == pytest.approx(0.99)
    assert s["mean_diff"] == pytest.approx(-0.5)


def test_psnr_of_constant_offset() -> None:
    ref = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    s = pair_stats(ref, ref.astype(np.float64) + 0.1)
    assert s["psnr"] == pytest.approx(20.0)
    assert s["rmse"] == pytest.approx(0.1)
    assert s["mean_diff"] == pytest.approx(0.1)
    assert pair_stats(ref, ref.astype(np.float64) + 0.1, data_range=255.0)["psnr"] == (
        pytest.approx(20.0 + 20 * math.log10(255.0))
    )


def test_identical() -> None:
    ref = np.random.default_rng(0).standard_normal((3, 5))
    s = pair_stats(ref, ref)
    assert s["psnr"] == math.inf
    assert s["max_abs_diff"] == 0.0 and s["rmse"] == 0.0 and s["max_rel_diff"] == 0.0
    assert s["cosine"] == pytest.approx(1.0)


def test_cosine() -> None:
    v = np.array([1.0, -2.0, 3.0, 0.5])
    assert pair_stats(v, v)["cosine"] == pytest.approx(1.0)
    assert pair_stats(v, -v)["cosine"] == pytest.approx(-1.0)
    assert pair_stats(v, 3 * v)["cosine"] == pytest.approx(1.0)
    assert pair_stats([1.0, 0.0], [0.0, 1.0])["cosine"] == pytest.approx(0.0)
    assert pair_stats([0.0, 0.0], [0.0, 0.0])["cosine"] == 1.0
    assert pair_stats([0.0, 0.0], [1.0, 0.0])["cosine"] == 0.0


def test_relative_diff() -> None:
    s = pair_stats([1.0, 2.0, -4.0, 10.0], [1.1, 2.0, -5.0, 10.0])
    assert s["max_rel_diff"] == pytest.approx(0.25)
    assert s["mean_rel_diff"] == pytest.approx((0.1 + 0.25) / 4)
    s = pair_stats([0.0], [1e-6])  # epsilon guard: finite, huge
    assert math.isfinite(s["max_rel_diff"]) and s["max_rel_diff"] > 1e5


def test_pair_stats_nan_propagates() -> None:
    s = pair_stats([1.0, 2.0], [1.0, np.nan])
    for key in ("mean_abs_diff", "max_abs_diff", "rmse", "psnr", "cosine", "mean_diff"):
        assert math.isnan(s[key]), key


def test_matching_infinities_are_equal() -> None:
    s = pair_stats([np.inf, 1.0], [np.inf, 1.0])
    assert s["max_abs_diff"] == 0.0
    assert check_tolerance([np.inf, 1.0], [np.inf, 1.0], atol=0, rtol=0) == (True, 0.0)


# --- shapes and empties ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        pair_stats,
        error_histogram,
        lambda r, o: check_tolerance(r, o, atol=1, rtol=0),
    ],
)
def test_shape_mismatch(fn) -> None:
    with pytest.raises(BigBiGANError) as e:
        fn(np.zeros((2, 32, 32, 3)), np.zeros((2, 3, 32, 32)))
    assert str(e.value) == "shapes differ: reference [2, 32, 32, 3], other [2, 3, 32, 32]"


def test_empty_is_an_error() -> None:
    with pytest.raises(BigBiGANError, match=r"nothing to compare.*\[0, 100\]"):
        check_tolerance(np.zeros((0, 100)), np.zeros((0, 100)), atol=1, rtol=0)


# --- histograms --------------------------------------------------------------------------------


def test_error_histogram() -> None:
    ref = np.zeros(10)
    other = np.array([0.0, 0.0, 0.0, 0.1, 0.1, 0.5, 0.5, 0.5, 0.9, 1.0])
    hist = error_histogram(ref, other, bins=2)
    assert hist == [(0.0, 0.5, 5), (0.5, 1.0, 5)]
    hist = error_histogram(ref, -other, bins=10)
    assert len(hist) == 10 and sum(c for _, _, c in hist) == 10
    assert hist[0] == (0.0, pytest.approx(0.1), 3)
    assert hist[-1][2] == 2  # 0.9 and 1.0: the last bin is closed


def test_error_histogram_edges() -> None:
    assert error_histogram(np.ones(4), np.ones(4)) == [(0.0, 0.0, 4)]
    hist = error_histogram([0.0, 0.0, 0.0], [0.5, np.nan, np.inf], bins=1)
    assert hist[0] == (0.0, 0.5, 1)
    lo, hi, count = hist[1]
    assert math.isnan(lo) and math.isnan(hi) and count == 2
    with pytest.raises(BigBiGANError, match="bins must be at least 1, found 0"):
        error_histogram([0.0], [0.0], bins=0)


def test_text_histogram() -> None:
    hist = [(0.0, 0.5, 10), (0.5, 1.0, 5), (1.0, 1.5, 0), (math.nan, math.nan, 1)]
    lines = text_histogram(hist, width=10).splitlines()
    assert len(lines) == 4
    assert lines[0] == "[0.000e+00, 5.000e-01)  ##########  10"
    assert lines[1] == "[5.000e-01, 1.000e+00)  #####        5"
    assert lines[2] == "[1.000e+00, 1.500e+00]               0"
    assert lines[3] == "NaN/Inf                 #            1"
    assert len({len(line) for line in lines}) == 1
    assert text_histogram([]) == ""


# --- check_tolerance ---------------------------------------------------------------------------


def test_statistics_names() -> None:
    assert STATISTICS == ("elementwise", "max", "mean", "median", "quantile")
    with pytest.raises(BigBiGANError, match="statistic must be one of .* found 'p99'"):
        check_tolerance([0.0], [0.0], atol=1, rtol=0, statistic="p99")
    with pytest.raises(BigBiGANError, match=r"quantile must be in \[0, 1\], found 99"):
        check_tolerance([0.0], [0.0], atol=1, rtol=0, statistic="quantile", quantile=99)
    with pytest.raises(BigBiGANError, match="non-negative"):
        check_tolerance([0.0], [0.0], atol=-1, rtol=0)


@pytest.mark.parametrize(
    ("statistic", "expected"),
    [
        ("elementwise", 0.5),
        ("max", 0.5),
        ("mean", 0.5 / N),
        ("median", 0.0),
        ("quantile", 0.5 * (0.99 * (N - 1) - (N - 2))),  # linear: 99th pct sits 0.01 past 98
    ],
)
def test_each_statistic_known_value(statistic, expected) -> None:
    ref, other = one_off(0.5)
    passed, needed = check_tolerance(ref, other, atol=1.0, rtol=0.0, statistic=statistic)
    assert passed
    assert needed == pytest.approx(expected, abs=1e-12)


def test_quantile_value() -> None:
    ref = np.zeros(101)
    other = np.arange(101) / 100.0
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        _, needed = check_tolerance(ref, other, atol=0, rtol=0, statistic="quantile", quantile=q)
        assert needed == pytest.approx(q)


def test_elementwise_uses_rtol_like_isclose() -> None:
    ref = np.array([1.0, 10.0, 100.0])
    other = np.array([1.05, 10.5, 105.0])  # 5% off everywhere
    assert check_tolerance(ref, other, atol=0.0, rtol=0.06)[0]
    assert not check_tolerance(ref, other, atol=0.0, rtol=0.04)[0]
    passed, needed = check_tolerance(ref, other, atol=0.0, rtol=0.04)
    assert needed == pytest.approx(5.0 - 4.0)  # the 100 -> 105 element needs atol 1
    rng = np.random.default_rng(0)
    r = rng.standard_normal(1000)
    o = r + rng.normal(scale=1e-3, size=1000)
    for atol, rtol in [(1e-3, 1e-3), (1e-4, 1e-2), (3e-3, 0.0)]:
        assert check_tolerance(r, o, atol=atol, rtol=rtol)[0] == bool(
            np.all(np.isclose(o, r, atol=atol, rtol=rtol))
        )


def test_rtol_ignored_by_reductions() -> None:
    ref, other = one_off(0.5)
    ref = ref + 1.0
    other = other + 1.0
    assert not check_tolerance(ref, other, atol=0.1, rtol=10.0, statistic="max")[0]


@pytest.mark.parametrize("statistic", STATISTICS)
@pytest.mark.parametrize("rtol", [0.0, 1e-3, 0.1])
def test_minimal_tolerance_passes_and_anything_below_fails(statistic, rtol) -> None:
    rng = np.random.default_rng(1)
    ref = rng.random((8, 32, 32, 3)).astype(np.float32)
    other = (ref + rng.normal(scale=1e-2, size=ref.shape)).astype(np.float32)
    kw = {"rtol": rtol, "statistic": statistic, "quantile": 0.9}
    passed, needed = check_tolerance(ref, other, atol=0.0, **kw)
    assert not passed and needed > 0
    assert check_tolerance(ref, other, atol=needed, **kw) == (True, needed)
    below = np.nextafter(needed, 0.0)
    assert check_tolerance(ref, other, atol=below, **kw) == (False, needed)


def test_needed_is_zero_when_rtol_covers_everything() -> None:
    assert check_tolerance([1.0, 2.0], [1.01, 2.01], atol=0.0, rtol=0.1) == (True, 0.0)


@pytest.mark.parametrize("statistic", STATISTICS)
def test_nan_never_passes(statistic) -> None:
    ref = np.zeros(1000)
    for other, r in [(np.zeros(1000), ref.copy()), (ref.copy(), np.zeros(1000))]:
        other[3] = np.nan  # NaN in the output, then in the reference
        passed, needed = check_tolerance(
            r, other, atol=math.inf, rtol=math.inf, statistic=statistic, quantile=0.5
        )
        assert not passed and math.isnan(needed)
    both = np.full(3, np.nan)
    assert not check_tolerance(both, both, atol=1.0, rtol=1.0, statistic=statistic)[0]


def test_infinite_difference() -> None:
    passed, needed = check_tolerance([1.0, 2.0], [1.0, np.inf], atol=1e9, rtol=1e9)
    assert not passed and needed == math.inf
    # an infinite reference gets no rtol slack, as in numpy.isclose
    assert not check_tolerance([np.inf], [1e300], atol=1e9, rtol=1.0)[0]
    assert not np.isclose(1e300, np.inf, atol=1e9, rtol=1.0)
    _, needed = check_tolerance([0.0, 0.0], [np.inf, np.inf], atol=0, rtol=0, statistic="median")
    assert needed == math.inf


# ---- relative percentiles, error maps, streamed comparison ----


def test_relative_error_percentiles():
    ref = np.full(100, 2.0)
    other = ref + np.arange(100) / 100  # |diff| = 0.00 .. 0.99, relative = half of that
    s = pair_stats(ref, other)
    assert s["median_rel_diff"] == pytest.approx(0.495 / 2)
    assert s["p90_rel_diff"] == pytest.approx(0.891 / 2)
    assert s["p99_rel_diff"] == pytest.approx(0.9801 / 2)
    assert s["max_rel_diff"] == pytest.approx(0.99 / 2)
    assert s["mean_rel_diff"] == pytest.approx(0.495 / 2)
    assert s["median_abs_diff"] == pytest.approx(0.495)


def test_error_map_is_the_per_pixel_mean_over_batch_and_channels():
    ref = np.zeros((4, 3, 5, 2), np.float32)  # N, H, W, C
    other = ref.copy()
    other[0, 1, 2, 0] = 0.8  # one sample, one channel
    other[:, 0, 0, :] = 0.1  # every sample and channel
    m = error_map(ref, other)
    assert m.shape == (3, 5)
    assert m[1, 2] == pytest.approx(0.8 / 8) and m[0, 0] == pytest.approx(0.1)
    assert m.sum() == pytest.approx(0.1 + 0.1)
    assert error_map(ref[..., 0], other[..., 0])[1, 2] == pytest.approx(0.8 / 4)  # (N, H, W)
    with pytest.raises(BigBiGANError, match="image batches"):
        error_map(np.zeros((2, 3)), np.zeros((2, 3)))


@pytest.mark.parametrize("statistic", STATISTICS)
@pytest.mark.parametrize("rtol", [0.0, 0.01])
def test_streamed_compare_equals_the_whole_array_statistics(statistic, rtol):
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((7, 3, 11)).astype(np.float32)
    other = (ref + rng.normal(0, 1e-3, ref.shape)).astype(np.float32)
    stats, passed, needed = streamed_compare(
        ref, other, atol=5e-4, rtol=rtol, statistic=statistic, quantile=0.9, chunk=50
    )
    whole = pair_stats(ref, other)
    for key, value in stats.items():
        assert value == pytest.approx(whole[key], rel=1e-12), key
    expected = check_tolerance(ref, other, atol=5e-4, rtol=rtol, statistic=statistic, quantile=0.9)
    assert (passed, needed) == (expected[0], pytest.approx(expected[1], rel=1e-12))


def test_streamed_compare_nan_and_infinities():
    stats, passed, needed = streamed_compare(
        [1.0, 2.0, 3.0], [1.0, np.nan, 3.0], atol=1, rtol=0, chunk=1
    )
    assert not passed and math.isnan(needed) and math.isnan(stats["max_abs_diff"])
    stats, passed, needed = streamed_compare([np.inf, 1.0], [np.inf, 1.0], atol=0, rtol=0)
    assert passed and needed == 0.0 and stats["max_abs_diff"] == 0.0
    with pytest.raises(BigBiGANError, match="shapes differ"):
        streamed_compare([1.0], [1.0, 2.0], atol=0, rtol=0)
