"""Reduced precision: every (target, precision) builder against the fp32 source within its bounds,
the accuracy cost in the sidecar, calibration inputs, and clear refusals (tiny width, ch=8)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import bigbigan.compile as compile_module
from bigbigan.compile import PRECISION_LIMITS, CompileReport, compile_model
from bigbigan.config import ModelConfig
from bigbigan.cpu import has_vnni, isa_class
from bigbigan.errors import BigBiGANError
from bigbigan.export import ExportReport
from bigbigan.interface import offline_specs, random_feed
from bigbigan.pt2e import CALIBRATIONS as PT2E_CALIBRATIONS
from bigbigan.quantize import CALIBRATIONS, ort_int8_format, plan_ort_int8
from bigbigan.runtimes import open_runner
from bigbigan.runtimes.build import CALIBRATION_SAMPLES, calibration_feeds
from bigbigan.training.sampling import TRUNCATION

HAS_TORCHAO = importlib.util.find_spec("torchao") is not None
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def _diff_vs_source(
    source: Path, compiled: Path, batch: int, seed: int = 11
) -> tuple[float, float]:
    """(mean, max) abs difference of two model files on a seeded feed unlike compile's own."""
    with open_runner(source) as a, open_runner(compiled) as b:
        feed = random_feed(a.inputs, batch, num_classes=10, seed=seed)
        diff = np.abs(a.infer(feed)["images"] - b.infer(feed)["images"])
    return float(diff.mean()), float(diff.max())


def _check_reduced(report: CompileReport, source: ExportReport, precision: str) -> None:
    mean_bound, max_bound = PRECISION_LIMITS[precision]
    assert report.precision == precision
    assert 0 < report.mean_abs_diff <= mean_bound and report.max_abs_diff <= max_bound
    meta = json.loads(report.sidecar.read_text())
    assert meta["precision"] == precision
    accuracy = meta["accuracy"]
    assert accuracy["mean_abs_diff"] == report.mean_abs_diff
    assert accuracy["bounds"] == {"mean": mean_bound, "max": max_bound}
    assert ("calibration" in meta) == (precision == "int8")
    for batch in (1, 16):  # dynamic batch kept; fresh inputs stay within the bounds
        mean, worst = _diff_vs_source(source.path, report.path, batch)
        assert mean <= mean_bound and worst <= max_bound
    assert not [p for p in report.path.parent.iterdir() if p.name.startswith(".")]


def test_calibration_feeds_follow_the_training_noise() -> None:
    specs, _ = offline_specs(ModelConfig(ch=8))
    feeds = calibration_feeds(specs, 10)
    assert sum(f["x1"].shape[0] for f in feeds) == CALIBRATION_SAMPLES
    z = np.concatenate([f["x1"] for f in feeds])
    y = np.concatenate([f["x2"] for f in feeds])
    assert z.dtype == np.float32 and np.abs(z).max() <= TRUNCATION and abs(z.std() - 0.88) < 0.05
    assert y.dtype == np.int32 and set(np.unique(y)) == set(range(10))
    again = calibration_feeds(specs, 10)
    assert all(np.array_equal(a["x1"], b["x1"]) for a, b in zip(feeds, again, strict=True))
    small = calibration_feeds(specs, 10, samples=70, batch=32)
    assert [f["x1"].shape[0] for f in small] == [32, 32, 6]


def test_ort_int8(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    report = compile_model(tiny_onnx.path, target="ort", precision="int8", out=tmp_path / "G.onnx")
    _check_reduced(report, tiny_onnx, "int8")
    ops = {node.op_type for node in onnx.load(str(report.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "QDQ" in report.note and "per-channel" in report.note
    meta = json.loads(report.sidecar.read_text())
    assert meta["calibration"]["samples"] == CALIBRATION_SAMPLES
    quantisation = meta["quantisation"]
    assert quantisation["format"]["reduce_range"] == (not has_vnni())  # this CPU's format
    assert quantisation["cpu"]["isa_class"] == isa_class()
    assert quantisation["quantised_op_types"] == ["Conv"]
    assert quantisation["calibration"] in CALIBRATIONS
    kept = [k["node"] for k in quantisation["kept_fp32"]]
    convs = [n for n in onnx.load(str(tiny_onnx.path)).graph.node if n.op_type == "Conv"]
    assert 0 < quantisation["quantised"] <= len(convs) - len(kept)
    assert {n.name for n in convs} >= set(kept)
    assert quantisation["selection"]["probe_mean"] <= quantisation["selection"]["target_mean"]
    speed = meta["speed_vs_fp32"]
    assert speed["faster"] == (speed["int8_images_per_s"] > speed["fp32_images_per_s"])
    assert ("prefer fp32 here" in report.note) == (not speed["faster"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G.onnx", "G.onnx.json"]


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        ({"avx2", "fma"}, "U8S8 reduce_range"),  # AVX2-only: VPMADDUBSW saturates
        ({"avx2", "avx512f", "avx512bw"}, "U8S8 reduce_range"),  # AVX-512 without VNNI
        ({"avx2", "avx_vnni"}, "U8S8"),
        ({"avx2", "avx512f", "avx512_vnni"}, "U8S8"),
        ({"avx2", "avx512f", "avx512_vnni", "amx_int8", "amx_bf16"}, "U8S8"),
    ],
)
def test_ort_int8_format_follows_the_cpu(flags: set[str], name: str) -> None:
    fmt = ort_int8_format(frozenset(flags))
    assert fmt.name == name and fmt.reduce_range == ("reduce_range" in name)


def _conv_chain(widths: list[int]) -> onnx.ModelProto:
    """A chain of 3x3 convolutions on 8x8 images with the given channel widths (shapes known)."""
    from onnx import TensorProto, helper

    nodes, inits, infos = [], [], []
    for i, (cin, cout) in enumerate(zip(widths, widths[1:], strict=False)):
        inits.append(
            helper.make_tensor(
                f"w{i}", TensorProto.FLOAT, [cout, cin, 3, 3], [0.0] * (cout * cin * 9)
            )
        )
        nodes.append(
            helper.make_node("Conv", [f"t{i}", f"w{i}"], [f"t{i + 1}"], name=f"c{i}", pads=[1] * 4)
        )
        infos.append(helper.make_tensor_value_info(f"t{i + 1}", TensorProto.FLOAT, [1, cout, 8, 8]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, widths[0], 8, 8])],
        [infos[-1]],
        inits,
        value_info=infos[:-1],
    )
    return helper.make_model(graph)


def test_plan_keeps_the_most_accuracy_per_multiply_add_in_fp32(tmp_path: Path) -> None:
    # c0 is 4x cheaper than c1/c2; keeping c1 saves the most error, c0 the most per multiply-add.
    model = _conv_chain([8, 16, 16, 16])
    saved = {"c0": 1e-3, "c1": 2e-3, "c2": 5e-4}
    calls: list[tuple[str, list[str]]] = []

    def quantise(calibration: str, kept: list[str], out: Path) -> None:
        calls.append((calibration, list(kept)))
        out.write_text(json.dumps([calibration, kept]))

    def error(path: Path) -> float:
        calibration, kept = json.loads(path.read_text())
        base = 6e-3 if calibration == "minmax" else 5e-3  # the percentile calibration wins
        return base - sum(saved[n] for n in kept)

    fmt = ort_int8_format(frozenset({"avx2"}))
    plan = plan_ort_int8(quantise, error, model, 3e-3, tmp_path, fmt)
    assert plan.calibration == "percentile-99.99"
    assert plan.sensitivity == pytest.approx({"c0": 4e-3, "c1": 3e-3, "c2": 4.5e-3})
    assert plan.kept_fp32 == ["c0", "c1"]
    assert plan.probe_mean == pytest.approx(2e-3)
    meta = plan.meta({"c0": "first"})
    assert meta["kept_fp32"] == [{"node": "c0", "layer": "first"}, {"node": "c1", "layer": "c1"}]
    assert list(tmp_path.iterdir()) == []  # candidates are removed as the search goes
    again = plan_ort_int8(quantise, error, model, 3e-3, tmp_path, fmt)
    assert again.kept_fp32 == plan.kept_fp32  # the same measurements, the same choice
    loose = plan_ort_int8(quantise, error, model, 1e-2, tmp_path, fmt)
    assert loose.kept_fp32 == [] and loose.sensitivity == {}
    strict = plan_ort_int8(quantise, error, model, 1e-9, tmp_path, fmt)  # one is always int8
    assert strict.kept_fp32 == ["c0", "c1"] and strict.probe_mean > 1e-9


def test_bounds_are_enforced(
    tiny_onnx: ExportReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(compile_module.PRECISION_LIMITS, "int8", (1e-9, 1e-9))
    with pytest.raises(BigBiGANError, match="within the int8 bounds .*nothing written"):
        compile_model(tiny_onnx.path, target="ort", precision="int8", out=tmp_path / "G.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "ort", "precision": "int8", "out": "G.ort"}, "int8 .* writes an .onnx"),
        ({"target": "ort", "precision": "int8", "device": "cuda"}, "int8 for target ort is CPU"),
        ({"target": "aoti", "precision": "fp16", "out": "G.pt2"}, "fp16 .* for CUDA GPUs"),
        (
            {"target": "aoti", "precision": "int8", "out": "G.pt2", "device": "cuda"},
            "int8 for target aoti is CPU-only",
        ),
        ({"target": "tensorrt", "precision": "int8", "out": "G.engine"}, "not supported yet"),
    ],
)
def test_unsupported_combinations(
    tiny_onnx: ExportReport, tmp_path: Path, kwargs: dict, message: str
) -> None:
    kwargs = {"out": "G.onnx", **kwargs}
    kwargs["out"] = tmp_path / kwargs["out"]
    with pytest.raises(BigBiGANError, match=message):
        compile_model(tiny_onnx.path, **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_aoti_bf16(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    report = compile_model(tiny_onnx.path, target="aoti", precision="bf16", out=tmp_path / "G.pt2")
    _check_reduced(report, tiny_onnx, "bf16")
    meta = json.loads(report.sidecar.read_text())
    assert meta["format"] == "bigbigan-aoti" and meta["inductor_configs"] == {"freezing": True}
    assert meta["outputs"][0]["dtype"] == "float32"  # the fp32 interface is kept


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao (PT2E quantisation) is not installed")
def test_aoti_int8(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    import torch

    report = compile_model(tiny_onnx.path, target="aoti", precision="int8", out=tmp_path / "G.pt2")
    _check_reduced(report, tiny_onnx, "int8")
    mixed = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    meta = json.loads(report.sidecar.read_text())
    assert (meta.get("between_int8_ops") == "bf16 (autocast)") == mixed
    quantisation = meta["quantisation"]
    assert ("-64..63" in quantisation["format"]["weights"]) == (not has_vnni())  # this CPU's
    assert quantisation["cpu"]["isa_class"] == isa_class()
    assert quantisation["quantised_op_types"] == ["conv2d"]
    assert quantisation["calibration"] in PT2E_CALIBRATIONS
    assert set(quantisation["calibration_means"]) == set(PT2E_CALIBRATIONS)
    selection = quantisation["selection"]
    assert selection["probe_mean"] <= selection["target_mean"]
    assert set(selection["seconds"]) == {"calibrate", "select"}  # what the selection cost
    kept = [k["layer"] for k in quantisation["kept_fp32"]]
    if selection["sensitivity"]:  # measured only where all-int8 missed the target
        assert set(selection["sensitivity"]) >= set(kept)
        assert quantisation["quantised"] == len(selection["sensitivity"]) - len(kept) > 0
    speed = meta["speed_vs_fp32"]
    assert speed["faster"] == (speed["int8_images_per_s"] > speed["fp32_images_per_s"])
    assert ("prefer fp32 here" in report.note) == (not speed["faster"])


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao (PT2E quantisation) is not installed")
def test_aoti_int8_refuses_beyond_its_bound(
    tiny_onnx: ExportReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(compile_module.PRECISION_LIMITS, "int8", (1e-9, 1e-9))
    with pytest.raises(BigBiGANError, match="within the int8 bounds .*nothing written"):
        compile_model(tiny_onnx.path, target="aoti", precision="int8", out=tmp_path / "G.pt2")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao (PT2E quantisation) is not installed")
def test_pt2e_layers_are_toggled_without_calibrating_again() -> None:
    import torch

    from bigbigan.model.networks import BigBiGAN, offline_module
    from bigbigan.pt2e import calibrate, feed_tensors, int8_layers, select

    cfg = ModelConfig(ch=8)
    torch.manual_seed(0)
    module = offline_module(BigBiGAN(cfg))
    specs, _ = offline_specs(cfg)
    args = feed_tensors(specs, random_feed(specs, 2, num_classes=10, seed=1))
    graph = torch.export.export(module, args).module()
    feeds = [feed_tensors(specs, random_feed(specs, 2, num_classes=10, seed=s)) for s in range(4)]
    quantised = calibrate(graph, "minmax", feeds)
    probe = feed_tensors(specs, random_feed(specs, 2, num_classes=10, seed=99))
    layers = int8_layers(quantised)
    assert "generator.conv_out" in layers and len(layers) >= 8  # every conv, by module path
    assert all(macs > 0 for _, macs in layers.values())
    nodes = {name: node for name, (node, _) in layers.items()}
    with torch.no_grad():
        expected = module(*probe)
        every = select(quantised, [])
        one = select(quantised, ["generator.conv_out"])
        none = select(quantised, list(layers))
        folded = select(quantised, ["generator.conv_out"], fold=True)
        found = [m(*probe) for m in (every, one, none, folded)]
    assert _int8_convs(every) == set(nodes.values())
    assert (
        _int8_convs(one)
        == _int8_convs(folded)
        == set(nodes.values()) - {nodes["generator.conv_out"]}
    )
    assert not [n for n in none.graph.nodes if "quantize" in str(n.target)]  # nothing left
    diffs = [(f - expected).abs().mean().item() for f in found]
    assert diffs[0] > 0 and diffs[1] > 0 and diffs[2] < 1e-6  # all in fp32: the fp32 model
    assert torch.equal(found[1], found[3])  # folding the int8 weights changes no value
    assert int8_layers(quantised) == layers  # the calibrated graph is left as it was


def _int8_convs(gm: object) -> set[str]:
    """The conv2d nodes of a quantised graph whose weight comes through a dequantize op."""
    return {
        n.name
        for n in gm.graph.nodes
        if getattr(n.target, "__name__", "").startswith("conv2d")
        and "dequantize" in str(getattr(n.args[1], "target", ""))
    }


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao (PT2E quantisation) is not installed")
def test_pt2e_int8_config_follows_the_cpu() -> None:
    from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver

    from bigbigan.pt2e import import_pt2e, int8_config, int8_format

    xiq = import_pt2e()[2]
    avx2 = int8_config(xiq, flags=frozenset({"avx2", "fma"}))
    assert (avx2.weight.quant_min, avx2.weight.quant_max) == (-64, 63)  # VPMADDUBSW saturates
    assert avx2.input_activation.quant_max == 255  # activations keep their 8 bits
    vnni = int8_config(xiq, flags=frozenset({"avx2", "avx512f", "avx512_vnni"}))
    assert (vnni.weight.quant_min, vnni.weight.quant_max) == (-128, 127)
    for calibration, observer in (("histogram", HistogramObserver), ("minmax", MinMaxObserver)):
        config = int8_config(xiq, calibration, frozenset({"avx2"}))
        for spec in (config.input_activation, config.output_activation):
            assert spec.observer_or_fake_quant_ctr.p.func is observer
    assert "-64..63" in int8_format(frozenset({"avx2"}))["weights"]
    assert "-128..127" in int8_format(frozenset({"amx_int8"}))["weights"]


@pytest.mark.skipif(HAS_TORCHAO, reason="torchao is installed here")
def test_aoti_int8_without_torchao_is_a_clear_error(
    tiny_onnx: ExportReport, tmp_path: Path
) -> None:
    with pytest.raises(BigBiGANError, match="needs torchao"):
        compile_model(tiny_onnx.path, target="aoti", precision="int8", out=tmp_path / "G.pt2")


@pytest.mark.slow
def test_aoti_inductor_configs(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    report = compile_model(
        tiny_onnx.path, target="aoti", out=tmp_path / "G.pt2", inductor_configs={"freezing": True}
    )
    assert report.max_abs_diff <= 1e-5 and report.mean_abs_diff is None
    meta = json.loads(report.sidecar.read_text())
    assert meta["inductor_configs"] == {"freezing": True}
    assert meta["rewrites"] == {}  # a frozen package keeps the exported upsampling


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed")
def test_openvino_runner(tiny_onnx: ExportReport) -> None:
    from bigbigan.runtimes.openvino import OpenVINORunner

    feed = random_feed(tiny_onnx.inputs, 6, num_classes=10, seed=2)
    with open_runner(tiny_onnx.path) as ort:
        expected = ort.infer(feed)["images"]
    with OpenVINORunner(tiny_onnx.path, threads=1) as runner:
        assert [s.name for s in runner.inputs] == ["x1", "x2"]
        assert runner.outputs[0].name == "images" and runner.outputs[0].shape[1:] == (32, 32, 1)
        assert np.abs(runner.infer(feed)["images"] - expected).max() <= 1e-5
    with OpenVINORunner(tiny_onnx.path, precision="bf16") as runner:
        assert np.abs(runner.infer(feed)["images"] - expected).mean() <= PRECISION_LIMITS["bf16"][0]
    with pytest.raises(BigBiGANError, match="openvino precision 'int4'"):
        OpenVINORunner(tiny_onnx.path, precision="int4")
    with pytest.raises(BigBiGANError, match="runs on the CPU only"):
        OpenVINORunner(tiny_onnx.path, device="cuda")
