"""bigbigan.compare.report: the compare and layerwise documents are strict JSON (NaN and Inf as
strings) under the one header, and the text report carries every section."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from bigbigan.compare.files import compare_arrays, summarize_files
from bigbigan.compare.layer_matching import LayerMatch
from bigbigan.compare.layerwise import LayerResult, LayerwiseReport
from bigbigan.compare.report import (
    compare_document,
    format_layerwise,
    format_report,
    getacc_lines,
    layerwise_document,
)
from bigbigan.compare.tolerances import Tolerances


def test_compare_document_is_strict_json_with_the_header():
    ref = np.zeros((2, 4, 4, 1), np.float32)
    broken = ref.copy()
    broken[0, 0, 0, 0] = np.nan
    arrays, names, paths = [ref, broken], ["ref", "broken"], ["ref.bin", "broken.bin"]
    files = summarize_files(arrays, names, paths)
    results = compare_arrays(arrays, names, paths, tolerances=Tolerances(atol=1e-3))
    doc = compare_document(
        "ref.bin", files, results, assumed=[], bad_files=None, grid=None, passed=False
    )
    text = json.dumps(doc, allow_nan=False)  # NaN statistics are strings, not bare NaN
    assert doc["format"] == "bigbigan-compare" and doc["version"] == 1
    pair = json.loads(text)["pairs"][0]
    assert pair["name"] == "broken" and pair["passed"] is False
    assert pair["max_abs_diff"] == "nan" and pair["needed_tolerance"] == "nan"
    assert doc["files"][1]["nan_count"] == 1 and doc["validate"] is None

    report = format_report(files, results, "ref")
    assert "broken vs ref:" in report and "NaN in the difference" in report
    assert getacc_lines(arrays[:1] * 2, ["a", "b"]) == ["getAcc mean pixel difference a vs b: 0"]


def test_layerwise_document_names_the_first_divergence():
    def result(layer: str, passed: bool, needed: float) -> LayerResult:
        match = LayerMatch(layer, layer, "Conv2d", f"{layer}_out", f"n_{layer}", "Conv", (3,), 12)
        stats = {"max_abs_diff": needed, "mean_abs_diff": needed, "max_rel_diff": needed}
        stats |= {"rmse": needed, "cosine": 1.0}
        return LayerResult(match, stats, passed, needed, 1e-4, 1e-3)

    rows = [result("a", True, 0.0), result("b", False, math.inf), result("c", False, 1.0)]
    report = LayerwiseReport(
        Path("m.onnx"), Path("ckpt"), 2, "elementwise", rows, {"d": "fused"}, 1, 0.5, 10.0
    )
    doc = json.loads(json.dumps(layerwise_document(report), allow_nan=False))
    assert doc["format"] == "bigbigan-layerwise" and doc["passed"] is False
    first = doc["first_divergence"]
    assert first["layer"] == "b" and first["needed_atol"] == "inf"
    assert [r["layer"] for r in doc["layers"]] == ["a", "b", "c"]
    text = format_layerwise(report)
    assert "first divergence: b (Conv2d; ONNX node n_b, Conv)" in text and "d: fused" in text
