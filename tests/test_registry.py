"""The registry is the one place a backend is added: a toy backend registered in one fixture
(a runner, a compile target with its builder, bench rows) shows up in compile, infer, bench,
pipeline and the CLI's choices, with nothing else edited."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from bigbigan.binio import sidecar_path
from bigbigan.cli.main import main
from bigbigan.compile import compile_model
from bigbigan.errors import BigBiGANError
from bigbigan.export import ExportReport
from bigbigan.runtimes import backend_for, open_runner, registry
from bigbigan.runtimes.build import (
    CompileJob,
    CompileReport,
    compiled_meta,
    staged,
    validate,
    write_sidecar,
)
from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner
from bigbigan.runtimes.registry import BenchRow, BenchSettings


class ToyRunner(OnnxRuntimeRunner):
    """A `.toy` file: an ONNX model under another name, run in ONNX Runtime."""

    name = "toy"
    suffixes = (".toy",)

    @classmethod
    def check_file(cls, path: Path) -> None:
        if not path.is_file():
            raise BigBiGANError(f"{path}: no such file")


def build_toy(job: CompileJob) -> CompileReport:
    """Copy the ONNX, validated against the source like every builder's artifact."""
    with staged(job.out) as path:
        started = time.perf_counter()
        shutil.copyfile(job.onnx_path, path)
        report = CompileReport("toy", job.precision, job.out, time.perf_counter() - started)
        report.max_abs_diff = validate(job, ToyRunner, path, batch=4)
        report.sidecar = sidecar_path(job.out)
        write_sidecar(path, compiled_meta(job, report))
    return report


def toy_rows(settings: BenchSettings) -> list[BenchRow]:
    return [BenchRow("toy", "fp32", model="toy", artifact="G.toy", note="a copy of the export")]


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the toy backend (undone after the test): these four calls are all it takes."""
    registry.load()
    for table in ("RUNNERS", "SUFFIXES", "TARGETS", "BENCH"):
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))
    registry.register_runner(ToyRunner)
    registry.register_target("toy", suffixes=(".toy",), artifact="G.toy")
    registry.builder("toy", "fp32")(build_toy)
    registry.bench_rows("toy")(toy_rows)


def test_registry_lists_every_backend() -> None:
    assert registry.runners() == ("torch", "onnxruntime", "aoti", "tensorrt", "openvino")
    assert registry.targets() == ("ort", "aoti", "tensorrt", "openvino", "ascend")
    assert registry.bench_backends() == (
        "torch", "cudagraph", "onnxruntime", "ort", "aoti", "openvino"
    )  # fmt: skip
    assert {t: tuple(registry.target(t).builders) for t in registry.targets()} == {
        "ort": ("fp32", "int8"),
        "aoti": ("fp32", "bf16", "fp16", "int8"),
        "tensorrt": ("fp32",),
        "openvino": ("fp32", "bf16"),
        "ascend": ("fp32",),
    }
    assert registry.runner_for_suffix(".xml").name == "openvino"
    assert registry.runner_for_suffix(".onnx").name == "onnxruntime"
    with pytest.raises(BigBiGANError, match="--target tflite: expected one of ort, aoti"):
        registry.target("tflite")


def test_an_extension_belongs_to_one_runner(toy: None) -> None:
    class Clash(ToyRunner):
        name = "clash"

    with pytest.raises(ValueError, match="extension .toy already belongs to toy"):
        registry.register_runner(Clash)


def test_toy_backend_appears_everywhere(
    toy: None,
    tiny_checkpoint: Path,
    tiny_onnx: ExportReport,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # compile: the target, its precision refusal, the CLI's --target choices
    report = compile_model(tiny_onnx.path, target="toy", out=tmp_path / "G.toy")
    assert report.max_abs_diff == 0.0 and json.loads(report.sidecar.read_text())["target"] == "toy"
    with pytest.raises(BigBiGANError, match="precision int8 for target toy is not supported"):
        compile_model(tiny_onnx.path, target="toy", precision="int8", out=tmp_path / "H.toy")
    with pytest.raises(BigBiGANError, match="target toy writes .toy files"):
        compile_model(tiny_onnx.path, target="toy", out=tmp_path / "G.onnx")
    argv = ["compile", str(tiny_onnx.path), "--target", "toy", "--out", str(tmp_path / "C.toy")]
    assert main(argv) == 0 and (tmp_path / "C.toy").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["compile", "--help"])
    assert "{auto,ort,aoti,tensorrt,openvino,ascend,toy}" in capsys.readouterr().out

    # infer: by extension
    assert backend_for(report.path) == "toy"
    assert isinstance(open_runner(report.path), ToyRunner)
    assert main(["infer", "--model", str(report.path), "--batch", "2"]) == 0
    assert "[toy]" in capsys.readouterr().out

    # bench: its rows, compiled once into artifacts/
    from bigbigan.bench import bench

    result = bench(
        tiny_checkpoint,
        batch_sizes=(2,),
        repeats=1,
        warmup=0,
        backends=("torch", "toy"),
        precisions=("fp32",),
        threads=1,
        out=tmp_path / "bench",
    )
    toy_row = next(r for r in result.rows if r.backend == "toy")
    assert toy_row.note == "a copy of the export" and toy_row.max_abs_diff <= 1e-5
    assert (tmp_path / "bench" / "artifacts" / "G.toy").is_file()

    # pipeline: a target like any other
    from bigbigan.pipeline import known_targets, pipeline

    assert "toy" in known_targets()
    doc = pipeline(tiny_checkpoint, tmp_path / "p", targets=("toy",), batch=2, loop=1, echo=False)
    assert [s["name"] for s in doc["stages"]] == ["pytorch", "toy"]
    assert (tmp_path / "p" / "G.toy").is_file()


def test_unregistered_names_are_clear_errors(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    from bigbigan.bench import bench
    from bigbigan.pipeline import pipeline

    with pytest.raises(BigBiGANError, match="--backends toy: expected some of torch, cudagraph"):
        bench(None, backends=("torch", "toy"), out=tmp_path)
    with pytest.raises(BigBiGANError, match="--targets toy: expected some of onnx, ort"):
        pipeline(tmp_path, tmp_path / "p", targets=("toy",))
    with pytest.raises(SystemExit) as info:
        main(["compile", str(tiny_onnx.path), "--target", "toy", "--out", "G.toy"])
    assert info.value.code == 2  # argparse: not among the registered --target choices
