"""`bigbigan compare`'s tolerances: global and per name, parsed from the flags, and every
statistic passing at exactly the value it reports as needed."""

from __future__ import annotations

import numpy as np
import pytest

from bigbigan.compare.files import (
    compare_arrays,
)
from bigbigan.compare.tolerances import Tolerances, parse_tolerances
from bigbigan.errors import BigBiGANError


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
