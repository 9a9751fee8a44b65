"""ONNX export: validated against PyTorch, dynamic or static batch, atomic, with a sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from bigbigan.config import ModelConfig
from bigbigan.errors import BigBiGANError
from bigbigan.export import ExportReport, export_onnx
from bigbigan.interface import TensorSpec, read_model_sidecar, sample_inputs
from bigbigan.runtimes import OnnxRuntimeRunner, TorchRunner
from bigbigan.training import checkpoint
from bigbigan.training.checkpoint import read

G_INPUTS = [TensorSpec("x1", "float32", (None, 100)), TensorSpec("x2", "int32", (None,))]
G_OUTPUTS = [TensorSpec("images", "float32", (None, 32, 32, 1))]


def _torch_output(
    checkpoint: Path, feed: dict[str, np.ndarray], encoder: bool = False
) -> np.ndarray:
    with TorchRunner(checkpoint, encoder=encoder) as runner:
        return next(iter(runner.infer(feed).values()))


def test_generator_export_matches_torch(tiny_onnx: ExportReport, tiny_checkpoint: Path) -> None:
    report = tiny_onnx
    assert report.path.is_file() and report.path.name == "G.onnx"
    assert report.max_abs_diff <= 1e-5 and report.mean_abs_diff <= report.max_abs_diff
    assert report.inputs == G_INPUTS and report.outputs == G_OUTPUTS
    onnx.checker.check_model(str(report.path), full_check=True)
    model = onnx.load(str(report.path))
    assert not any(  # one self-contained file
        init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer
    )
    assert [i.name for i in model.graph.input] == ["x1", "x2"]
    assert [o.name for o in model.graph.output] == ["images"]
    assert not list(report.path.parent.glob("*.tmp"))

    # Dynamic batch: batch 1 and batch 5 through the same file, each against PyTorch.
    with OnnxRuntimeRunner(report.path) as runner:
        assert runner.inputs == G_INPUTS
        for batch in (1, 5):
            feed = sample_inputs(runner_cfg(tiny_checkpoint), batch=batch, seed=batch)
            images = runner.infer(feed)["images"]
            assert images.shape == (batch, 32, 32, 1) and images.dtype == np.float32
            assert np.abs(images - _torch_output(tiny_checkpoint, feed)).max() <= 1e-5


def runner_cfg(checkpoint: Path) -> ModelConfig:
    return read(checkpoint).model


def test_sidecar_records_config_checkpoint_and_numbers(
    tiny_onnx: ExportReport, tiny_checkpoint: Path
) -> None:
    meta = json.loads(tiny_onnx.sidecar.read_text())
    assert tiny_onnx.sidecar.name == "G.onnx.json"
    assert meta["format"] == "bigbigan-onnx" and meta["role"] == "generator"
    assert Path(meta["checkpoint"]) == checkpoint.read(tiny_checkpoint).directory.resolve()
    assert meta["model"]["ch"] == 8 and meta["opset"] == 18 and meta["static_batch"] is None
    assert meta["validation"]["max_abs_diff"] == tiny_onnx.max_abs_diff
    assert meta["validation"]["batches"] == [8, 1]
    assert read_model_sidecar(tiny_onnx.path)["inputs"] == G_INPUTS


def test_encoder_export(tiny_encoder_onnx: ExportReport, tiny_checkpoint: Path) -> None:
    report = tiny_encoder_onnx
    assert report.inputs == [TensorSpec("x", "float32", (None, 32, 32, 1))]
    assert report.outputs == [TensorSpec("z", "float32", (None, 100))]
    assert report.max_abs_diff <= 1e-5
    feed = sample_inputs(runner_cfg(tiny_checkpoint), encoder=True, batch=3)
    with OnnxRuntimeRunner(report.path) as runner:
        z = runner.infer(feed)["z"]
    assert z.shape == (3, 100)
    assert np.abs(z - _torch_output(tiny_checkpoint, feed, encoder=True)).max() <= 1e-5


def test_unconditional_generator_takes_only_noise(
    tiny_unconditional_checkpoint: Path, tmp_path: Path
) -> None:
    report = export_onnx(tiny_unconditional_checkpoint, tmp_path / "G.onnx", validate_batch=2)
    assert report.inputs == [G_INPUTS[0]] and report.max_abs_diff <= 1e-5


def test_static_batch_rejects_other_batch(tiny_checkpoint: Path, tmp_path: Path) -> None:
    report = export_onnx(tiny_checkpoint, tmp_path / "G3.onnx", static_batch=3)
    assert report.inputs[0].shape == (3, 100) and report.outputs[0].shape == (3, 32, 32, 1)
    assert json.loads(report.sidecar.read_text())["static_batch"] == 3
    cfg = runner_cfg(tiny_checkpoint)
    with OnnxRuntimeRunner(report.path) as runner:
        assert runner.infer(sample_inputs(cfg, batch=3))["images"].shape == (3, 32, 32, 1)
        with pytest.raises(BigBiGANError, match=r"input x1: shape \[5, 100\].*expects \[3, 100\]"):
            runner.infer(sample_inputs(cfg, batch=5))


def test_over_tolerance_writes_nothing(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bigbigan.export

    monkeypatch.setattr(bigbigan.export, "diff_stats", lambda a, b: (0.5, 0.25))
    out = tmp_path / "G.onnx"
    with pytest.raises(BigBiGANError, match=r"differs from PyTorch by max 0.5 > --tolerance"):
        export_onnx(tiny_checkpoint, out, static_batch=2)
    assert list(tmp_path.iterdir()) == []  # no file, no sidecar, no temp files


def test_given_inputs_are_checked_first(tiny_checkpoint: Path, tmp_path: Path) -> None:
    feed = sample_inputs(runner_cfg(tiny_checkpoint), batch=4)
    bad = {**feed, "x2": feed["x2"].astype(np.int64)}
    with pytest.raises(BigBiGANError, match=r"input x2: dtype int64.*expects int32"):
        export_onnx(tiny_checkpoint, tmp_path / "G.onnx", inputs=bad)
    out_of_range = {**feed, "x2": np.full(4, 10, np.int32)}
    with pytest.raises(BigBiGANError, match=r"labels must be in \[0, 10\)"):
        export_onnx(tiny_checkpoint, tmp_path / "G.onnx", inputs=out_of_range)
    with pytest.raises(BigBiGANError, match=r"input x1: shape \[4, 100\].*expects \[2, 100\]"):
        export_onnx(tiny_checkpoint, tmp_path / "G.onnx", inputs=feed, static_batch=2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"static_batch": 0}, "--static-batch 0"),
        ({"validate_batch": 0}, "--validate-batch 0"),
        ({"tolerance": -1.0}, "--tolerance -1"),
    ],
)
def test_bad_arguments(tiny_checkpoint: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(BigBiGANError, match=message):
        export_onnx(tiny_checkpoint, tmp_path / "G.onnx", **kwargs)


def test_bad_output_name_and_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(BigBiGANError, match=r"--out .*G.pb: expected a file name ending in .onnx"):
        export_onnx(tiny_checkpoint, tmp_path / "G.pb")
    with pytest.raises(BigBiGANError, match="no checkpoint.json"):
        export_onnx(tmp_path, tmp_path / "G.onnx")
