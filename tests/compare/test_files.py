"""`bigbigan compare` on files: summaries, NaN/Inf validation, histograms, heat-maps, `.npy`
input, and the command line's reports and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bigbigan.binio import save_bin
from bigbigan.cli.main import main
from bigbigan.compare.files import (
    compare_arrays,
    load_outputs,
    save_error_maps,
    summarize_files,
)
from bigbigan.compare.report import file_json
from bigbigan.errors import BigBiGANError


def cli_error(argv, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_file_summaries_known_values(tmp_path):
    a = np.arange(101, dtype=np.float32)
    b = np.array([1.0, np.nan, np.inf, 3.0], np.float32)
    (sa, sb) = summarize_files([a, b], ["a", "b"], ["a.bin", "b.bin"])
    assert sa.stats["mean"] == 50 and sa.stats["p90"] == pytest.approx(90)
    assert sa.stats["p99"] == pytest.approx(99) and sa.stats["std"] == pytest.approx(a.std())
    assert sb.stats["nan_count"] == 1 and sb.stats["inf_count"] == 1 and sb.stats["max"] == 3
    assert file_json(sb)["shape"] == [4]


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


def test_verbose_shows_the_cause_behind_the_one_line(tmp_path, capsys):
    """The one line stays as it was; --verbose adds the chained cause (`raise ... from e`)."""
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.zeros((4, 3), np.float32))
    np.save(b, np.zeros((5, 3), np.float32))  # same sample shape, another batch
    argv = ["compare", str(a), str(b)]
    err = cli_error(argv, capsys)
    assert f"{b}: shapes differ: reference [4, 3], other [5, 3]" in err
    assert main(["--verbose", *argv]) == 1
    verbose = capsys.readouterr().err
    assert "direct cause" in verbose and verbose.strip().splitlines()[-1] == err.strip()
