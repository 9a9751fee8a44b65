"""The infer summary (harness/summary.py): its schema, the checks that name what is wrong, its
documentation, a summary written with the first header read back, and the spread warning."""

from __future__ import annotations

import copy
import json

import pytest

from bigbigan.errors import BigBiGANError
from bigbigan.harness.summary import (
    SUMMARY_FIELDS,
    InferResult,
    read_summary,
    spread_warning,
    validate_summary,
)
from bigbigan.infer import infer


def test_summary_matches_its_schema(tmp_path, tiny_onnx):
    result = infer(
        tiny_onnx.path, None, tmp_path, loop=3, warmup=2, batch=5, summary=tmp_path / "s.json"
    )
    doc = json.loads((tmp_path / "s.json").read_text())
    validate_summary(doc)
    assert doc == json.loads((tmp_path / "G_summary.json").read_text())
    assert doc["format"] == "bigbigan-infer-summary" and doc["version"] == 1
    assert doc["inputs"]["source"] == "synthetic"
    assert doc["timing"]["runs"] == 3 and len(doc["runs_ms"]) == 3
    assert doc["timing"]["warmup"] == 2 and doc["arguments"]["warmup"] == 2
    assert doc["timing"]["batch"] == 5 and doc["inputs"]["seed"] == 0
    assert doc["backend"]["name"] == "onnxruntime" and doc["backend"]["version"]
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    assert doc["timing"]["peak_rss_mb"] > 0 and doc["model"]["load_s"] > 0
    assert doc["timing"]["phases_ms"] is None  # nothing to split on the CPU
    assert "not applicable" in doc["timing"]["phases_note"]
    lat = doc["timing"]["latency_ms"]
    assert lat["min"] <= lat["median"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert doc["outputs"]["files"] == [str(p) for p in result.outputs]
    (array,) = doc["outputs"]["arrays"]
    assert array["name"] == "images" and array["shape"] == [5, 32, 32, 1]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("machine"), "missing machine"),
        (lambda d: d["timing"]["latency_ms"].pop("p95"), "missing timing.latency_ms.p95"),
        (lambda d: d["timing"].update(runs="3"), "timing.runs must be int"),
        (lambda d: d["timing"].update(runs=True), "timing.runs must be int"),
        (lambda d: d["backend"].update(threads=1.5), "backend.threads must be int/null"),
        (lambda d: d.update(version=2), "version 2"),
        (lambda d: d.update(format="bigbigan-bench"), "format 'bigbigan-bench'"),
        (lambda d: d["runs_ms"].append(1.0), "runs_ms"),
        (lambda d: d.update(runs_ms=["1"] * len(d["runs_ms"])), "list of numbers"),
    ],
)
def test_schema_check_names_what_is_wrong(tmp_path, tiny_onnx, mutate, message):
    doc = infer(tiny_onnx.path, None, None, batch=2, loop=2).summary()
    validate_summary(doc)
    broken = copy.deepcopy(doc)
    mutate(broken)
    with pytest.raises(BigBiGANError, match=message):
        validate_summary(broken)


def test_schema_fields_are_documented():
    """Every summary key appears in the reference documentation."""
    from pathlib import Path

    docs = (Path(__file__).parents[2] / "docs" / "infer_compare.md").read_text()
    assert "bigbigan-infer-summary" in docs
    for key, kind in SUMMARY_FIELDS.items():
        assert f"`{key}`" in docs, key
        if isinstance(kind, dict):
            for sub in kind:
                assert f"`{sub}`" in docs, f"{key}.{sub}"


def test_summary_with_the_first_header_still_reads(tmp_path, tiny_onnx):
    """Summaries written before the one header convention said schema/schema_version."""
    doc = infer(tiny_onnx.path, None, None, batch=2, loop=2).summary()
    old = {"schema": doc["format"], "schema_version": doc["version"]}
    old.update({k: v for k, v in doc.items() if k not in ("format", "version")})
    (tmp_path / "old.json").write_text(json.dumps(old))
    validate_summary(old)
    assert read_summary(tmp_path / "old.json")["runs_ms"] == doc["runs_ms"]
    old["schema"] = "bigbigan-something-else"
    (tmp_path / "other.json").write_text(json.dumps(old))
    with pytest.raises(BigBiGANError, match="other.json: expected format"):
        read_summary(tmp_path / "other.json")


def test_spread_warning_above_five_percent():
    def result(ms):
        return InferResult("m.onnx", "onnxruntime", [], ms, 8, 0.1)

    assert spread_warning(result([10.0, 10.2, 9.9, 10.1])) is None
    assert "coefficient of variation" in spread_warning(result([10.0, 14.0, 10.0]))
    assert spread_warning(result([10.0])) is None  # one run has no spread
    r = result([10.0, 10.0, 30.0])
    assert r.images_per_s == pytest.approx(8 / 0.010)  # the median, not the slow outlier
