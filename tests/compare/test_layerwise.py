"""`bigbigan compare --layerwise`: a planted fault (one weight perturbed in the ONNX file) is
found at the right layer; clean models pass; chunking does not change the answer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bigbigan.cli.main import main
from bigbigan.compare.layerwise import layerwise
from bigbigan.compare.report import layerwise_document
from bigbigan.compare.tolerances import parse_tolerances
from bigbigan.errors import BigBiGANError


def planted(source, out_dir, initializer, delta=0.5):
    """A copy of the ONNX file (and its sidecar) with one weight of `initializer` moved."""
    model = onnx.load(str(source))
    for init in model.graph.initializer:
        if init.name == initializer:
            weight = numpy_helper.to_array(init).copy()
            weight.flat[0] += delta
            init.CopyFrom(numpy_helper.from_array(weight, init.name))
            break
    else:
        raise AssertionError(f"no initializer {initializer}")
    out = out_dir / "G.onnx"
    onnx.save(model, str(out))
    shutil.copy(source.with_name(source.name + ".json"), out.with_name("G.onnx.json"))
    return out


def test_clean_export_agrees_layer_by_layer(tiny_onnx):
    report = layerwise(tiny_onnx.path, batch=8)
    assert report.passed and report.first_divergence is None and report.chunks == 1
    layers = [r.match.layer for r in report.results]
    assert layers[0] == "generator.embed" and layers[-1] == "images"  # execution order
    assert layers.index("generator.block1") < layers.index("generator.block2.conv2")
    assert {"generator.attention.o", "generator.block3.skip", "generator.conv_out"} <= set(layers)
    by_layer = {r.match.layer: r for r in report.results}
    assert by_layer["generator.block2.bn2.bn"].match.fused == ["generator.block2.conv1"]
    assert by_layer["generator.block2.conv2"].match.op == "Conv"
    assert "fused into" in report.unmatched["generator.block2.conv1"]
    assert all(r.stats["max_abs_diff"] < 1e-4 for r in report.results)
    assert report.batch == 8 and layerwise_document(report)["first_divergence"] is None


def test_planted_fault_in_a_fused_conv_is_located(tiny_onnx, tmp_path, capsys):
    bad = planted(tiny_onnx.path, tmp_path, "generator.block2.conv1.weight")
    report = layerwise(bad, batch=8)
    first = report.first_divergence
    assert first is not None and first.match.layer == "generator.block2.bn2.bn"
    assert first.match.fused == ["generator.block2.conv1"] and first.needed > 1e-2
    index = report.results.index(first)
    assert all(r.passed for r in report.results[:index])
    assert report.results[-1].match.layer == "images" and not report.results[-1].passed
    assert main(["compare", str(bad), "--layerwise", "--batch", "8"]) == 1
    out = capsys.readouterr().out
    assert "first divergence: generator.block2.bn2.bn" in out
    assert "also computes generator.block2.conv1" in out


def test_planted_fault_in_an_unfused_layer_is_located_exactly(tiny_onnx, tmp_path):
    bad = planted(tiny_onnx.path, tmp_path, "generator.attention.o.weight", delta=5.0)
    first = layerwise(bad, batch=8).first_divergence
    assert first is not None and first.match.layer == "generator.attention.o"
    assert first.match.fused == []


def test_chunks_give_the_same_answer(tiny_onnx, tmp_path):
    bad = planted(tiny_onnx.path, tmp_path, "generator.block3.skip.weight")
    whole = layerwise(bad, batch=4)
    split = layerwise(bad, batch=4, memory_mb=1e-6)  # one layer per chunk
    assert split.chunks == len(split.results) > 1
    assert [r.match.layer for r in split.results] == [r.match.layer for r in whole.results]
    for a, b in zip(whole.results, split.results, strict=True):
        assert a.stats == b.stats and a.passed == b.passed
    assert split.first_divergence.match.layer == "generator.block3.skip"


def test_per_layer_tolerance_and_json(tiny_onnx, tmp_path, capsys):
    bad = planted(tiny_onnx.path, tmp_path, "generator.block3.skip.weight")
    t = parse_tolerances(["1e-4", "generator.block3.skip:10"], ["1e-3"])
    report = layerwise(bad, batch=4, tolerances=t)
    skip = next(r for r in report.results if r.match.layer == "generator.block3.skip")
    assert skip.passed and skip.atol == 10
    assert report.first_divergence.match.layer == "generator.block3"  # the next layer
    argv = ["compare", str(bad), "--layerwise", "--batch", "4", "--json"]
    assert main([*argv, "--atol", "generator.block3.skip:10"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["first_divergence"]["layer"] == "generator.block3"
    assert doc["format"] == "bigbigan-layerwise" and len(doc["layers"]) == len(report.results)
    with pytest.raises(BigBiGANError, match="nothing compared is named 'generator.nope'"):
        layerwise(bad, batch=2, tolerances=parse_tolerances(["generator.nope:1"]))


def test_inputs_from_files(tiny_onnx, tmp_path):
    from bigbigan.inputs import make_inputs

    files = make_inputs(tmp_path / "in", batch=5, seed=2)
    report = layerwise(tiny_onnx.path, inputs=[str(f) for f in files])
    assert report.batch == 5 and report.passed


def test_errors(tiny_onnx, tmp_path, tiny_checkpoint):
    copy = tmp_path / "G.onnx"
    shutil.copy(tiny_onnx.path, copy)  # no sidecar
    with pytest.raises(BigBiGANError, match="--checkpoint"):
        layerwise(copy, batch=2)
    assert layerwise(copy, checkpoint=tiny_checkpoint, batch=2).passed
    model = onnx.load(str(copy))
    for node in model.graph.node:
        del node.metadata_props[:]
    onnx.save(model, str(copy))
    with pytest.raises(BigBiGANError, match="no layer names"):
        layerwise(copy, checkpoint=tiny_checkpoint, batch=2)
    with pytest.raises(BigBiGANError, match="needs an .onnx model"):
        layerwise(tmp_path / "G.ort", checkpoint=tiny_checkpoint)


@pytest.mark.slow
def test_full_size_generator_at_batch_256(tmp_path):
    """The reference architecture (ch=64, 168 GFLOP a batch) at batch 256: the fault is found,
    in bounded memory (measured in a fresh process)."""
    import torch

    from bigbigan.export import export_onnx
    from bigbigan.model.networks import BigBiGAN
    from bigbigan.training import checkpoint
    from bigbigan.training.loop import model_config_for

    torch.manual_seed(0)
    cfg = model_config_for("fashion_mnist", ch=64, conditional=True)
    model = BigBiGAN(cfg).train()
    with torch.no_grad():  # settle spectral norm's power iteration and the batch-norm statistics
        for _ in range(5):
            model.G(torch.randn(16, cfg.z_dim), torch.randint(0, 10, (16,)))
        model.G.attention.gamma.fill_(0.5)
    checkpoint.save(tmp_path / "run", model.eval())
    source = export_onnx(tmp_path / "run", tmp_path / "src" / "G.onnx").path
    bad = planted(source, tmp_path, "generator.block2.conv2.weight", delta=0.1)
    argv = [sys.executable, "-m", "bigbigan", "compare", str(bad), "--layerwise", "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["batch"] == 256 and doc["chunks"] >= 2
    assert doc["first_divergence"]["layer"] == "generator.block2.conv2"
    assert doc["peak_rss_mb"] < 4000
    assert np.isfinite(doc["seconds"])
