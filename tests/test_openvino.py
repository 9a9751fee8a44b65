"""OpenVINO through the registry alone: `compile --target openvino` (IR, fp32 and a bf16 hint,
validated against the source ONNX), the runner by extension in infer, its bench rows, and the
pipeline target."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from bigbigan.cli.main import main
from bigbigan.compile import PRECISION_LIMITS, CompileReport, compile_model
from bigbigan.errors import BigBiGANError
from bigbigan.export import ExportReport
from bigbigan.interface import random_feed
from bigbigan.runtimes import backend_for, open_runner

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason="OpenVINO is not installed (pip install '.[perf]')",
)


def _diff(source: Path, compiled: Path, batch: int) -> tuple[float, float]:
    """(mean, max) abs difference between the source ONNX (ONNX Runtime) and the IR."""
    with open_runner(source) as a, open_runner(compiled) as b:
        assert b.name == "openvino"
        feed = random_feed(a.inputs, batch, num_classes=10, seed=9)
        diff = np.abs(a.infer(feed)["images"] - b.infer(feed)["images"])
    return float(diff.mean()), float(diff.max())


@pytest.fixture(scope="module")
def ir_fp32(tiny_onnx: ExportReport, tmp_path_factory: pytest.TempPathFactory) -> CompileReport:
    return compile_model(
        tiny_onnx.path, target="openvino", out=tmp_path_factory.mktemp("ov") / "G.xml"
    )


def test_ir_fp32(ir_fp32: CompileReport, tiny_onnx: ExportReport) -> None:
    report = ir_fp32
    assert report.target == "openvino" and report.precision == "fp32"
    assert report.path.suffix == ".xml" and report.path.with_suffix(".bin").is_file()
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-5
    assert "OpenVINO" in report.note and "conv_transpose4x4/2" in report.note
    meta = json.loads(report.sidecar.read_text())
    assert meta["format"] == "bigbigan-compiled" and meta["target"] == "openvino"
    assert meta["precision"] == "fp32" and sum(meta["rewrites"].values()) == 6
    assert [i["name"] for i in meta["inputs"]] == ["x1", "x2"]
    assert meta["outputs"][0]["shape"] == [None, 32, 32, 1]
    assert sorted(p.name for p in report.path.parent.iterdir()) == [
        "G.bin", "G.xml", "G.xml.json"
    ]  # fmt: skip
    assert backend_for(report.path) == "openvino"
    for batch in (1, 5):  # dynamic batch kept
        assert _diff(tiny_onnx.path, report.path, batch)[1] <= 1e-5
    with open_runner(report.path) as runner:
        assert runner.precision == "fp32" and runner.outputs[0].name == "images"


def test_bf16_hint(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    import openvino

    report = compile_model(
        tiny_onnx.path, target="openvino", precision="bf16", out=tmp_path / "G.bf16.xml"
    )
    mean_bound, max_bound = PRECISION_LIMITS["bf16"]
    assert report.mean_abs_diff <= mean_bound and report.max_abs_diff <= max_bound
    meta = json.loads(report.sidecar.read_text())
    assert meta["precision"] == "bf16" and meta["rewrites"] == {}  # bf16 keeps the export
    assert meta["accuracy"]["bounds"] == {"mean": mean_bound, "max": max_bound}
    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert ("runs it in fp32 here" in report.note) == ("BF16" not in capabilities)
    with open_runner(report.path) as runner:
        assert runner.precision == "bf16"  # from the sidecar
    with open_runner(report.path, precision="fp32") as runner:
        assert runner.precision == "fp32"  # an explicit option wins
    mean, worst = _diff(tiny_onnx.path, report.path, 16)
    assert mean <= mean_bound and worst <= max_bound


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "int8"}, r"precision int8 for target openvino .*supported: fp32, bf16"),
        ({"out": "G.onnx"}, "target openvino writes .xml files"),
        ({"device": "cuda"}, "--device cuda: target openvino is for the CPU"),
    ],
)
def test_refusals(tiny_onnx: ExportReport, tmp_path: Path, kwargs: dict, message: str) -> None:
    kwargs = {"out": "G.xml", **kwargs}
    kwargs["out"] = tmp_path / kwargs["out"]
    with pytest.raises(BigBiGANError, match=message):
        compile_model(tiny_onnx.path, target="openvino", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_sidecar_and_onnx_by_flag(
    ir_fp32: CompileReport, tiny_onnx: ExportReport, tmp_path: Path
) -> None:
    for name in ("G.xml", "G.bin"):
        (tmp_path / name).write_bytes(ir_fp32.path.with_name(name).read_bytes())
    (tmp_path / "G.xml.json").write_text(json.dumps({"format": "bigbigan-compiled"}))
    with pytest.raises(BigBiGANError, match=r"G.xml.json: precision None, expected fp32/bf16"):
        open_runner(tmp_path / "G.xml")
    (tmp_path / "G.xml.json").unlink()  # without its sidecar: names from the IR's own ports
    with open_runner(tmp_path / "G.xml") as runner:
        assert [s.name for s in runner.inputs] == ["x1", "x2"] and runner.precision == "fp32"
    with open_runner(tiny_onnx.path, backend="openvino") as runner:
        assert runner.name == "openvino" and runner.outputs[0].name == "images"


def test_cli_compile_and_infer(
    tiny_onnx: ExportReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "G.xml"
    argv = ["compile", str(tiny_onnx.path), "--target", "openvino", "--out", str(out)]
    assert main([*argv, "--precision", "bf16"]) == 0
    assert f"wrote {out} (openvino, bf16" in capsys.readouterr().out
    assert main(["infer", "--model", str(out), "--batch", "3", "--output", str(tmp_path)]) == 0
    assert "[openvino]" in capsys.readouterr().out


def test_bench_rows(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from bigbigan.bench import bench

    result = bench(
        tiny_checkpoint,
        batch_sizes=(2,),
        repeats=1,
        warmup=0,
        backends=("torch", "openvino"),
        precisions=("fp32", "bf16"),
        threads=1,
        out=tmp_path,
    )
    rows = {r.label: r for r in result.rows}
    assert rows["openvino fp32"].max_abs_diff <= 1e-5
    assert rows["openvino bf16"].mean_abs_diff <= PRECISION_LIMITS["bf16"][0]
    assert "compile --target openvino" in rows["openvino fp32"].note
    assert (tmp_path / "artifacts" / "G.fp32.xml").is_file() and result.skipped == []


def test_pipeline_target(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from bigbigan.pipeline import pipeline

    doc = pipeline(
        tiny_checkpoint,
        tmp_path,
        targets=("onnx", "openvino", "ascend"),
        batch=2,
        loop=1,
        echo=False,
    )
    assert [s["name"] for s in doc["stages"]] == ["pytorch", "onnx", "openvino"]
    assert all(s["mean_abs_diff"] <= 1e-5 for s in doc["stages"])
    assert "atc" in doc["notes"]["ascend"] and (tmp_path / "G.xml").is_file()


@pytest.mark.slow
def test_pipeline_every_cpu_target(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The README's pipeline line: `--targets onnx,ort,aoti,openvino,ascend`."""
    targets = "onnx,ort,aoti,openvino,ascend"
    argv = ["pipeline", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path),
            "--targets", targets, "--batch", "2", "--loop", "1"]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads((tmp_path / "report.json").read_text())
    assert [s["name"] for s in doc["stages"]] == ["pytorch", "onnx", "ort", "aoti", "openvino"]
