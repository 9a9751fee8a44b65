"""`bigbigan compare`: tolerances global and per name, every statistic on hand-made arrays with
known answers, NaN/Inf validation, heat-maps, reports and exit codes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bigbigan.binio import save_bin
from bigbigan.cli.main import main
from bigbigan.compare.files import (
    Tolerances,
    compare_arrays,
    load_outputs,
    parse_tolerances,
    save_error_maps,
    summarize_files,
)
from bigbigan.compare.statistics import (
    STATISTICS,
    check_tolerance,
    error_map,
    pair_stats,
    streamed_compare,
)
from bigbigan.errors import BigBiGANError


def cli_error(argv, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---- statistics with known answers ----


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


def test_file_summaries_known_values(tmp_path):
    a = np.arange(101, dtype=np.float32)
    b = np.array([1.0, np.nan, np.inf, 3.0], np.float32)
    (sa, sb) = summarize_files([a, b], ["a", "b"], ["a.bin", "b.bin"])
    assert sa.stats["mean"] == 50 and sa.stats["p90"] == pytest.approx(90)
    assert sa.stats["p99"] == pytest.approx(99) and sa.stats["std"] == pytest.approx(a.std())
    assert sb.stats["nan_count"] == 1 and sb.stats["inf_count"] == 1 and sb.stats["max"] == 3
    assert sb.to_json()["shape"] == [4]


# ---- tolerances ----


def test_parse_tolerances_global_and_per_name():
    t = parse_tolerances(["1e-5", "images:1e-4,z:0.5"], ["ort:1e-2"], statistic="max")
    assert t.atol == 1e-5 and t.rtol == 0.0 and t.statistic == "max"
    assert t.atol_by_name == {"images": 1e-4, "z": 0.5} and t.rtol_by_name == {"ort": 1e-2}
    assert t.lookup("images") == (1e-4, 0.0)
    assert t.lookup("ort", "images") == (1e-4, 1e-2)
    assert t.lookup("other") == (1e-5, 0.0)
    assert t.lookup("z", "images") == (0.5, 0.0)  # the first name with an override wins
    d = parse_tolerances([], [], default_atol=1e-4, default_rtol=1e-3)
    assert (d.atol, d.rtol) == (1e-4, 1e-3)


@pytest.mark.parametrize(
    "atol, message",
    [
        (["images:abc"], "--atol images:abc: expected a non-negative number or NAME:NUMBER"),
        (["-1"], "--atol -1: expected"),
        ([":1e-3"], "--atol :1e-3: expected"),
        (["images:"], "--atol images:: expected"),
        (["nan"], "--atol nan: expected"),
        (["1e-3,"], "expected"),
        (["1e-3", "2e-3"], "global tolerance is given twice"),
        (["a:1", "a:2"], "a is given twice"),
    ],
)
def test_bad_tolerances_are_one_line_errors(atol, message):
    with pytest.raises(BigBiGANError, match=message) as info:
        parse_tolerances(atol)
    assert "\n" not in str(info.value)


def test_bad_statistic_and_quantile():
    with pytest.raises(BigBiGANError, match="--statistic"):
        Tolerances(statistic="p50")
    with pytest.raises(BigBiGANError, match="--quantile"):
        Tolerances(statistic="quantile", quantile=1.5)


def test_unknown_name_is_an_error():
    t = parse_tolerances(["onxx:1e-3"])
    with pytest.raises(BigBiGANError, match="nothing compared is named 'onxx'.*onnx"):
        t.check_names({"onnx", "ort"})


def test_per_name_tolerance_decides_each_pair():
    ref = np.zeros((2, 4, 4, 1), np.float32)
    close, far = ref + 1e-5, ref + 1e-3
    t = parse_tolerances(["1e-4", "far:1e-2"])
    a, b = compare_arrays([ref, close, far], ["ref", "close", "far"], ["r", "c", "f"], tolerances=t)
    assert a.passed and a.atol == 1e-4 and a.needed == pytest.approx(1e-5)
    assert b.passed and b.atol == 1e-2 and b.needed == pytest.approx(1e-3)
    (b,) = compare_arrays([ref, far], ["ref", "far"], ["r", "f"], tolerances=Tolerances(atol=1e-4))
    assert b.passed is False and "1e-05" not in b.failures[0] and "> atol 0.0001" in b.failures[0]


def test_per_name_lookup_by_file_stem_and_keys():
    ref = np.zeros(4)
    other = ref + 0.5
    t = parse_tolerances(["G_output_0:1"])
    (r,) = compare_arrays([ref, other], ["ref", "ort"], ["a.bin", "x/G_output_0.bin"], tolerances=t)
    assert r.atol == 1 and r.passed
    t = parse_tolerances(["images:1"])
    (r,) = compare_arrays(
        [ref, other], ["ref", "ort"], ["a.bin", "b.bin"], tolerances=t, keys=[["images"]]
    )
    assert r.atol == 1 and r.passed


def test_each_statistic_passes_at_its_needed_value():
    ref = np.zeros(10)
    other = np.arange(10) / 10  # |diff| 0.0 .. 0.9
    expected = {"elementwise": 0.9, "max": 0.9, "mean": 0.45, "median": 0.45, "quantile": 0.81}
    for statistic, needed in expected.items():
        t = Tolerances(atol=needed, statistic=statistic, quantile=0.9)
        (r,) = compare_arrays([ref, other], ["r", "o"], ["r", "o"], tolerances=t)
        assert r.passed and r.needed == pytest.approx(needed), statistic
        t = Tolerances(atol=needed * 0.99, statistic=statistic, quantile=0.9)
        (r,) = compare_arrays([ref, other], ["r", "o"], ["r", "o"], tolerances=t)
        assert r.passed is False, statistic


def test_legacy_tolerance_is_mean_abs():
    ref = np.zeros(4)
    other = np.array([0.0, 0.0, 0.0, 0.4])
    (r,) = compare_arrays([ref, other], ["a", "b"], ["a", "b"], tolerance=0.1)
    assert r.passed and r.needed == pytest.approx(0.1) and r.statistic == "mean"
    (r,) = compare_arrays([ref, other], ["a", "b"], ["a", "b"])
    assert r.passed is None and r.needed == pytest.approx(0.1)


def test_validate_fails_on_nan_and_inf():
    ref = np.zeros(4)
    other = np.array([0.0, np.inf, 0.0, 0.0])
    (r,) = compare_arrays([ref, other], ["a", "b"], ["a", "b"], validate=True)
    assert r.passed is False and r.nonfinite == 1 and "NaN/Inf" in r.failures[0]
    (r,) = compare_arrays([ref, other], ["a", "b"], ["a", "b"])
    assert r.passed is None and r.nonfinite == 1


def test_histogram_has_ten_bins():
    ref = np.zeros(100)
    other = np.arange(100) / 100
    (r,) = compare_arrays([ref, other], ["a", "b"], ["a", "b"])
    assert len(r.histogram) == 10 and sum(c for _, _, c in r.histogram) == 100
    assert r.histogram[-1][1] == pytest.approx(0.99)


def test_heatmaps_are_written_beside_the_grid(tmp_path):
    ref = np.zeros((3, 8, 8, 1), np.float32)
    other = ref.copy()
    other[:, 2, 5, 0] = 0.3
    results = compare_arrays([ref, other], ["ref", "o n/x"], ["r", "o"])
    save_error_maps([ref, other], results, tmp_path / "grid.png")
    (r,) = results
    assert r.heatmap == tmp_path / "grid_error_o_n_x.png"
    assert r.heatmap.read_bytes().startswith(b"\x89PNG")
    assert r.heatmap_max == pytest.approx(0.3)


def test_npy_files_compare(tmp_path):
    ref = np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32)
    np.save(tmp_path / "ref.npy", ref)
    (ref + 0.5).astype(np.float32).tofile(tmp_path / "raw.bin")
    a, b = load_outputs([tmp_path / "ref.npy", tmp_path / "raw.bin"])
    assert a.shape == b.shape and np.allclose(b - a, 0.5)
    np.save(tmp_path / "bad.npy", ref[:, :16])
    with pytest.raises(BigBiGANError, match="bad.npy"):
        load_outputs([tmp_path / "ref.npy", tmp_path / "bad.npy"])


# ---- the command line: output and exit codes ----


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(1)
    ref = rng.random((9, 32, 32, 1), dtype=np.float32)
    save_bin(tmp_path / "ref.bin", ref)
    save_bin(tmp_path / "near.bin", ref + np.float32(1e-6))
    save_bin(tmp_path / "far.bin", ref + np.float32(1e-2))
    return [str(tmp_path / f) for f in ("ref.bin", "near.bin", "far.bin")]


def test_cli_report_and_per_name_pass(files, tmp_path, capsys):
    grid = tmp_path / "g.png"
    argv = ["compare", *files, "--names", "ref,near,far", "--grid", str(grid)]
    assert main([*argv, "--atol", "1e-5", "--atol", "far:0.02", "--validate"]) == 0
    out = capsys.readouterr().out
    assert "smallest passing atol" in out and "PSNR" in out and "rel error" in out
    assert "p99" in out and "nan_count" in out and out.rstrip().endswith("PASS")
    assert out.count("|abs error| histogram") == 2
    assert (tmp_path / "g_error_near.png").exists() and (tmp_path / "g_error_far.png").exists()


def test_cli_exit_codes(files, capsys, tmp_path):
    assert main(["compare", *files]) == 0  # nothing checked: report only
    assert main(["compare", *files, "--atol", "1e-5"]) == 1  # far fails
    assert main(["compare", *files, "--atol", "1e-5", "--statistic", "quantile"]) == 1
    assert main(["compare", *files[:2], "--rtol", "1e-3"]) == 1  # ref values near 0
    assert main(["compare", *files[:2], "--rtol", "1e-3", "--atol", "2e-6"]) == 0
    capsys.readouterr()
    assert main(["compare", files[0]]) == 2
    assert main(["compare", *files, "--tolerance", "1", "--atol", "1"]) == 2
    assert main(["compare", *files, "--checkpoint", "x"]) == 2
    assert main(["compare", *files, "--layerwise"]) == 2
    with pytest.raises(SystemExit) as info:
        main(["compare", *files, "--statistic", "p50"])
    assert info.value.code == 2
    capsys.readouterr()
    err = cli_error(["compare", *files, "--atol", "far:abc"], capsys)
    assert "--atol far:abc" in err
    err = cli_error(["compare", *files, "--atol", "fra:1e-3"], capsys)
    assert "'fra'" in err and "far" in err
    bad = tmp_path / "nan.bin"
    arr = np.zeros((9, 32, 32, 1), np.float32)
    arr[0, 0, 0, 0] = np.nan
    save_bin(bad, arr)
    assert main(["compare", files[0], str(bad)]) == 0
    assert main(["compare", files[0], str(bad), "--validate"]) == 1


def test_cli_json_and_summary(files, tmp_path, capsys):
    summary = tmp_path / "c.json"
    argv = ["compare", *files, "--atol", "1e-3", "--statistic", "quantile", "--quantile", "0.5"]
    assert main([*argv, "--json", "--summary", str(summary)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(summary.read_text())
    assert report["format"] == "bigbigan-compare" and report["passed"] is False
    near, far = report["pairs"]
    assert near["passed"] is True and far["passed"] is False
    assert far["needed_tolerance"] == pytest.approx(1e-2, rel=1e-3)
    assert far["statistic"] == "quantile" and far["quantile"] == 0.5
    histogram = far["abs_error_histogram"]
    assert len(histogram) == 10 and sum(c for _, _, c in histogram) == 9 * 32 * 32
    assert report["files"][0]["mean"] == pytest.approx(0.5, abs=0.05)
