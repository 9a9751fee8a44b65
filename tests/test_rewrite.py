"""The exact upsampling rewrites: the kernel identity, the graph pass, and what it leaves alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from bigbigan.cli.main import main
from bigbigan.compile import compile_model
from bigbigan.export import ExportReport
from bigbigan.interface import random_feed
from bigbigan.model.blocks import UpBlock
from bigbigan.model.networks import offline_module
from bigbigan.model.rewrite import (
    CONV1X1_BEFORE_UPSAMPLE,
    CONV3X3_TO_TRANSPOSED,
    FoldedUpBlock,
    fold_upsampling,
    rewrite_upsampling,
    transposed_kernel,
)
from bigbigan.runtimes import open_runner
from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner
from bigbigan.training.checkpoint import load_model


@pytest.mark.parametrize("size", [1, 3, 4])
def test_transposed_kernel_is_upsample_then_conv(size: int) -> None:
    torch.manual_seed(size)
    x = torch.randn(2, 5, size, size + 1, dtype=torch.float64)
    w = torch.randn(7, 5, 3, 3, dtype=torch.float64)
    expected = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, padding=1)
    wt = torch.from_numpy(transposed_kernel(w.numpy()))
    assert wt.shape == (5, 7, 4, 4) and wt.dtype == torch.float64
    found = F.conv_transpose2d(x, wt, stride=2, padding=1)
    assert found.shape == expected.shape
    torch.testing.assert_close(found, expected, rtol=0, atol=1e-12)


def test_fold_upsampling_keeps_the_generator(tiny_checkpoint: Path) -> None:
    model, _ = load_model(tiny_checkpoint)
    plain, folded = offline_module(model), offline_module(model)
    assert fold_upsampling(folded) == {CONV3X3_TO_TRANSPOSED: 3, CONV1X1_BEFORE_UPSAMPLE: 3}
    assert not any(isinstance(m, UpBlock) for m in folded.modules())
    assert sum(isinstance(m, FoldedUpBlock) for m in folded.modules()) == 3
    assert sum(isinstance(m, UpBlock) for m in plain.modules()) == 3  # the copy is its own
    torch.manual_seed(0)
    z, y = torch.randn(5, 100).clamp(-2, 2), torch.arange(5, dtype=torch.int32)
    with torch.no_grad():
        torch.testing.assert_close(folded(z, y), plain(z, y), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="offline_module first"):
        fold_upsampling(model.G)  # spectral norm still parametrizes the weights


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _saved(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def test_rewrites_the_exported_generator(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    source = onnx.load(str(tiny_onnx.path))
    model = onnx.load(str(tiny_onnx.path))
    done = rewrite_upsampling(model)
    assert done == {CONV3X3_TO_TRANSPOSED: 3, CONV1X1_BEFORE_UPSAMPLE: 3}
    onnx.checker.check_model(model, full_check=True)
    assert _ops(model).count("ConvTranspose") == 3
    # every Resize now upsamples a skip branch after its 1x1 convolution
    producers = {o: n for n in model.graph.node for o in n.output}
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 3 and all(producers[r.input[0]].op_type == "Conv" for r in resizes)
    used = {i for n in model.graph.node for i in n.input}
    assert all(t.name in used for t in model.graph.initializer)
    assert _ops(source).count("ConvTranspose") == 0  # the file on disk is untouched
    rewritten = _saved(model, tmp_path / "G.onnx")
    with OnnxRuntimeRunner(tiny_onnx.path) as a, OnnxRuntimeRunner(rewritten) as b:
        for batch in (1, 5):
            feed = random_feed(a.inputs, batch, num_classes=10, seed=batch)
            d = np.abs(a.infer(feed)["images"] - b.infer(feed)["images"]).max()
            assert d <= 1e-5


def _graph(resize_attrs: dict, conv: dict, extra_user: bool = False) -> onnx.ModelProto:
    """x (1, 2, 3, 3) -> Resize -> Conv -> y, optionally with the resized map also an output."""
    k = conv.pop("k", 3)
    w = np.ones((4, 2, k, k), np.float32)
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["up"], mode="nearest", **resize_attrs),
        helper.make_node("Conv", ["up", "w"], ["y"], **conv),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_user:
        outputs.append(helper.make_tensor_value_info("up", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
        outputs,
        [
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
            numpy_helper.from_array(w, "w"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


EXPORTER = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}


@pytest.mark.parametrize(
    ("resize", "conv", "extra_user", "expected"),
    [
        (EXPORTER, {"pads": [1, 1, 1, 1]}, False, {CONV3X3_TO_TRANSPOSED: 1}),
        ({}, {"pads": [1, 1, 1, 1]}, False, {CONV3X3_TO_TRANSPOSED: 1}),  # ONNX defaults
        (EXPORTER, {"k": 1}, False, {CONV1X1_BEFORE_UPSAMPLE: 1}),
        (EXPORTER, {"pads": [0, 0, 0, 0]}, False, {}),  # 'valid' 3x3
        (EXPORTER, {"pads": [1, 1, 1, 1], "strides": [2, 2]}, False, {}),
        (EXPORTER, {"pads": [1, 1, 1, 1]}, True, {}),  # the upsampled map is used elsewhere
        (
            {"coordinate_transformation_mode": "half_pixel", "nearest_mode": "floor"},
            {"pads": [1, 1, 1, 1]},
            False,
            {},
        ),  # floor of half_pixel does not repeat pixels
    ],
)
def test_rewrites_only_exact_matches(
    resize: dict, conv: dict, extra_user: bool, expected: dict, tmp_path: Path
) -> None:
    model = _graph(resize, conv, extra_user)
    before = model.SerializeToString()
    source = _saved(model, tmp_path / "before.onnx")
    assert rewrite_upsampling(model) == expected
    x = {"x": np.random.default_rng(0).standard_normal((1, 2, 3, 3)).astype(np.float32)}
    after = _saved(model, tmp_path / "after.onnx")
    with OnnxRuntimeRunner(source) as a, OnnxRuntimeRunner(after) as b:
        np.testing.assert_allclose(b.infer(x)["y"], a.infer(x)["y"], atol=1e-5)
    if not expected:
        assert model.SerializeToString() == before


def test_compile_ort_rewrites_by_default(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    report = compile_model(tiny_onnx.path, target="ort", out=tmp_path / "G.onnx")
    meta = json.loads(report.sidecar.read_text())
    assert meta["format"] == "bigbigan-compiled" and meta["file_format"] == "ONNX"
    assert meta["rewrites"] == {CONV3X3_TO_TRANSPOSED: 3, CONV1X1_BEFORE_UPSAMPLE: 3}
    assert "conv_transpose" in report.note
    assert "ConvTranspose" in _ops(onnx.load(str(report.path)))
    plain = compile_model(tiny_onnx.path, target="ort", out=tmp_path / "P.onnx", rewrite=False)
    assert json.loads(plain.sidecar.read_text())["rewrites"] == {}
    assert "ConvTranspose" not in _ops(onnx.load(str(plain.path)))
    with open_runner(report.path) as a, open_runner(plain.path) as b:
        feed = random_feed(a.inputs, 4, num_classes=10, seed=3)
        assert np.abs(a.infer(feed)["images"] - b.infer(feed)["images"]).max() <= 1e-5


def test_cli_no_rewrite(
    tiny_onnx: ExportReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "G.plain.onnx"
    argv = ["compile", str(tiny_onnx.path), "--target", "ort", "--out", str(out)]
    assert main([*argv, "--no-rewrite"]) == 0
    assert json.loads((tmp_path / "G.plain.onnx.json").read_text())["rewrites"] == {}
    assert "conv_transpose" not in capsys.readouterr().out
    assert main(argv) == 0
    assert "3x upsample+conv3x3 -> conv_transpose4x4/2" in capsys.readouterr().out
