"""`bigbigan pipeline` end to end at tiny size: every stage, the report, the grid; the stages
are timed by the same harness as `infer`."""

from __future__ import annotations

import json

import pytest

from bigbigan.harness.summary import read_summary
from bigbigan.pipeline import pipeline


@pytest.mark.slow
def test_pipeline_onnx_against_the_reference(tmp_path, tiny_checkpoint):
    out = tmp_path / "run"
    report = pipeline(tiny_checkpoint, out, targets=("onnx",), batch=4, loop=2, echo=False)
    assert report["format"] == "bigbigan-pipeline" and report["version"] == 1
    assert json.loads((out / "report.json").read_text()) == report
    assert [s["name"] for s in report["stages"]] == ["pytorch", "onnx"]
    onnx = report["stages"][1]
    assert onnx["max_abs_diff"] <= 1e-4 and onnx["images_per_s"] > 0
    assert (out / "grid.png").stat().st_size > 0 and "| onnx |" in (out / "report.md").read_text()
    summary = read_summary(out / "onnx" / "G_summary.json")  # infer's summary, via the harness
    assert summary["timing"]["runs"] == 2 and summary["inputs"]["source"] == "files"
    assert summary["machine"]["isa"]
