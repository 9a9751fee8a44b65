"""compile targets: ort, aoti (slow), tensorrt (absent here), ascend; and every refusal."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest

from bigbigan.compile import CompileReport, compile_model
from bigbigan.errors import BigBiGANError
from bigbigan.export import ExportReport
from bigbigan.interface import onnx_specs, random_feed
from bigbigan.runtimes import open_runner, registry

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _same_as_source(source: Path, compiled: Path, batch: int = 3) -> float:
    """Max abs difference between two model files on one seeded feed."""
    with open_runner(source) as a, open_runner(compiled) as b:
        feed = random_feed(b.inputs, batch, num_classes=10, seed=7)
        return float(np.abs(a.infer(feed)["images"] - b.infer(feed)["images"]).max())


def test_every_target_has_an_fp32_builder() -> None:
    assert registry.targets() == ("ort", "aoti", "tensorrt", "openvino", "ascend")
    assert all("fp32" in registry.target(t).builders for t in registry.targets())


def test_ort_format(tiny_ort: CompileReport, tiny_onnx: ExportReport) -> None:
    report = tiny_ort
    assert report.target == "ort" and report.precision == "fp32" and report.command is None
    assert report.path.suffix == ".ort" and report.path.read_bytes()[4:8] == b"ORTM"
    assert report.seconds > 0 and report.max_abs_diff is not None and report.max_abs_diff <= 1e-5
    assert "ORT format" in report.note and "specific to this CPU" in report.note
    meta = json.loads(report.sidecar.read_text())
    assert meta["target"] == "ort" and meta["level"] == "all"
    assert meta["checkpoint"] == json.loads(tiny_onnx.sidecar.read_text())["checkpoint"]
    assert _same_as_source(tiny_onnx.path, report.path) <= 1e-5
    assert not [p for p in report.path.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("level", ["extended", "basic"])
def test_ort_onnx_output(tiny_onnx: ExportReport, tmp_path: Path, level: str) -> None:
    report = compile_model(
        tiny_onnx.path, target="ort", out=tmp_path / "G.opt.onnx", ort_level=level
    )
    onnx.checker.check_model(str(report.path))
    assert "specific to this CPU" not in report.note
    assert _same_as_source(tiny_onnx.path, report.path, batch=5) <= 1e-5
    with pytest.raises(BigBiGANError, match="optimization level 'max'"):
        compile_model(tiny_onnx.path, target="ort", out=tmp_path / "G2.onnx", ort_level="max")


def test_ascend_writes_static_onnx_and_command(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    if shutil.which("atc"):
        pytest.skip("a real atc is on PATH")
    report = compile_model(tiny_onnx.path, target="ascend", out=tmp_path / "G.om", batch=4)
    assert report.path == tmp_path / "G.static.onnx" and report.path.is_file()
    assert not (tmp_path / "G.om").exists()
    assert "atc is not on PATH" in report.note and report.max_abs_diff == 0.0
    assert report.command == (
        f"atc --framework=5 --model={tmp_path / 'G.static.onnx'} --output={tmp_path / 'G'} "
        '--input_format=ND --input_shape="x1:4,100;x2:4" --soc_version=Ascend310'
    )
    model = onnx.load(str(report.path))
    onnx.checker.check_model(model, full_check=True)
    inputs, outputs = onnx_specs(model)
    assert [s.shape for s in inputs] == [(4, 100), (4,)]
    assert outputs[0].shape == (4, 32, 32, 1)
    assert not any(  # no symbolic dims left anywhere for ATC
        d.HasField("dim_param")
        for v in [*model.graph.input, *model.graph.output, *model.graph.value_info]
        for d in v.type.tensor_type.shape.dim
    )
    assert json.loads(report.sidecar.read_text())["command"] == report.command
    zeros = {"x1": np.zeros((5, 100), np.float32), "x2": np.zeros(5, np.int32)}
    with open_runner(report.path) as runner, pytest.raises(BigBiGANError, match=r"\[4, 100\]"):
        runner.infer(zeros)


def test_ascend_defaults_and_encoder(tiny_encoder_onnx: ExportReport, tmp_path: Path) -> None:
    report = compile_model(
        tiny_encoder_onnx.path, target="ascend", out=tmp_path / "E", soc_version="Ascend310P3"
    )
    assert report.path == tmp_path / "E.static.onnx"
    assert '--input_shape="x:256,32,32,1"' in report.command
    assert report.command.endswith("--soc_version=Ascend310P3")


def test_ascend_runs_atc_when_on_path(
    tiny_onnx: ExportReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    atc = bin_dir / "atc"
    atc.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in --output=*) out="${a#--output=}";; esac; done\n'
        'echo "$@" > "$out.om"\n'
    )
    atc.chmod(atc.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "build" / "G.om"
    report = compile_model(tiny_onnx.path, target="ascend", out=out, batch=2)
    assert report.path == out and out.is_file()
    assert "--input_shape=x1:2,100;x2:2" in out.read_text()  # argv, no shell quoting
    assert "atc built G.om" in report.note
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]

    atc.write_text("#!/bin/sh\necho 'E10001: bad soc' >&2\nexit 3\n")
    with pytest.raises(BigBiGANError, match=r"atc failed \(exit 3\).*E10001: bad soc"):
        compile_model(tiny_onnx.path, target="ascend", out=tmp_path / "H.om", batch=2)
    assert not (tmp_path / "H.om").exists()


def test_static_source_keeps_its_batch(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    first = compile_model(tiny_onnx.path, target="ascend", out=tmp_path / "a" / "G.om", batch=3)
    again = compile_model(first.path, target="ascend", out=tmp_path / "b" / "G.om")
    assert '--input_shape="x1:3,100;x2:3"' in again.command
    with pytest.raises(BigBiGANError, match="--batch 5: .* has static batch 3"):
        compile_model(first.path, target="ascend", out=tmp_path / "c" / "G.om", batch=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "ort", "precision": "bf16"}, "precision bf16 for target ort is not supported"),
        ({"target": "ascend", "precision": "int8"}, "precision int8 for target ascend is not supp"),
        ({"target": "ort", "precision": "fp64"}, "--precision fp64: expected one of"),
        (
            {"target": "tflite"},
            "--target tflite: expected one of ort, aoti, tensorrt, openvino, asc",
        ),
        ({"target": "ort", "device": "npu"}, "--device npu"),
        ({"target": "ascend", "batch": 0}, "--batch 0"),
    ],
)
def test_refusals(tiny_onnx: ExportReport, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(BigBiGANError, match=message):
        compile_model(tiny_onnx.path, out=tmp_path / "G.ort", **kwargs)


def test_file_name_refusals(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    with pytest.raises(BigBiGANError, match="target aoti writes .pt2 files"):
        compile_model(tiny_onnx.path, target="aoti", out=tmp_path / "G.so")
    with pytest.raises(BigBiGANError, match="target ort writes .onnx or .ort files"):
        compile_model(tiny_onnx.path, target="ort", out=tmp_path / "G.bin")
    with pytest.raises(BigBiGANError, match="would overwrite the source"):
        compile_model(tiny_onnx.path, target="ort", out=tiny_onnx.path)
    garbage = tmp_path / "bad.onnx"
    garbage.write_bytes(b"\xffnot onnx" * 20)
    with pytest.raises(BigBiGANError, match="bad.onnx: not a valid ONNX model"):
        compile_model(garbage, target="ort", out=tmp_path / "G.ort")
    with pytest.raises(BigBiGANError, match="expected an .onnx model"):
        compile_model(tmp_path / "G.pt2", target="ort", out=tmp_path / "G.ort")


def test_aoti_needs_a_checkpoint(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    bare = tmp_path / "bare.onnx"
    shutil.copy(tiny_onnx.path, bare)  # no sidecar naming the checkpoint
    with pytest.raises(BigBiGANError, match="naming the checkpoint.*pass --checkpoint"):
        compile_model(bare, target="aoti", out=tmp_path / "G.pt2")


def test_aoti_rejects_a_mismatched_checkpoint(
    tiny_onnx: ExportReport, tiny_unconditional_checkpoint: Path, tmp_path: Path
) -> None:
    with pytest.raises(BigBiGANError, match="its generator interface .* does not match"):
        compile_model(
            tiny_onnx.path,
            target="aoti",
            out=tmp_path / "G.pt2",
            checkpoint=tiny_unconditional_checkpoint,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_tensorrt_absent_is_a_clear_error(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    with pytest.raises(BigBiGANError, match="TensorRT is not installed.*pip install tensorrt"):
        compile_model(tiny_onnx.path, target="tensorrt", out=tmp_path / "G.engine")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_aoti_package(tiny_aoti: CompileReport, tiny_onnx: ExportReport) -> None:
    report = tiny_aoti
    assert report.path.suffix == ".pt2" and report.max_abs_diff <= 1e-5
    meta = json.loads(report.sidecar.read_text())
    assert meta["format"] == "bigbigan-aoti" and meta["device"] == "cpu"
    assert meta["rewrites"] == {"upsample+conv3x3 -> conv_transpose4x4/2": 3,
                                "upsample+conv1x1 -> conv1x1+upsample": 3}  # fmt: skip
    assert [i["name"] for i in meta["inputs"]] == ["x1", "x2"]
    assert meta["inputs"][0]["shape"] == [None, 100]
    assert meta["outputs"] == [{"name": "images", "dtype": "float32", "shape": [None, 32, 32, 1]}]
    for batch in (1, 6):  # dynamic batch
        assert _same_as_source(tiny_onnx.path, report.path, batch=batch) <= 1e-5


def test_sidecars_are_documents_and_old_ones_still_read(
    tiny_ort: CompileReport, tmp_path: Path
) -> None:
    """Compiled sidecars carry the documents header (format and version); a sidecar written
    before they had a version reads the same in every reader of compiled sidecars."""
    from bigbigan.interface import read_model_sidecar
    from bigbigan.runtimes import aoti, openvino
    from bigbigan.runtimes.build import SIDECAR_FORMAT, SIDECAR_VERSION
    from bigbigan.serve.artefacts import describe

    meta = json.loads(tiny_ort.sidecar.read_text())
    assert list(meta)[:2] == ["format", "version"]
    assert (meta["format"], meta["version"]) == (SIDECAR_FORMAT, SIDECAR_VERSION)
    old = {k: v for k, v in meta.items() if k != "version"}  # as the first sidecars were
    ort = tmp_path / "G.ort"
    shutil.copyfile(tiny_ort.path, ort)
    (tmp_path / "G.ort.json").write_text(json.dumps(old))
    assert read_model_sidecar(ort, SIDECAR_FORMAT)["inputs"][0].name == "x1"
    assert describe(ort) == ("compiled ort", "fp32")
    with open_runner(ort) as runner:
        assert [s.name for s in runner.inputs] == ["x1", "x2"]
    (tmp_path / "G.xml.json").write_text(json.dumps(old))
    assert openvino.read_ir_sidecar(tmp_path / "G.xml")["outputs"][0].name == "images"
    (tmp_path / "G.pt2.json").write_text(json.dumps({**old, "format": aoti.SIDECAR_FORMAT}))
    assert aoti.read_sidecar(tmp_path / "G.pt2")["inputs"][1].name == "x2"
