"""Throughput modes: a batch split across copies of a model (StreamedRunner) or run in slices
(Runner.micro_batch) gives the same images, in the same order, as one whole call; and the cases
they cannot serve are clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bigbigan.cli.main import main
from bigbigan.compile import CompileReport
from bigbigan.errors import BigBiGANError
from bigbigan.export import ExportReport
from bigbigan.harness.summary import validate_summary
from bigbigan.infer import infer
from bigbigan.interface import random_feed
from bigbigan.runtimes import OnnxRuntimeRunner, StreamedRunner, open_runner


def _images(runner: OnnxRuntimeRunner | StreamedRunner, feed: dict[str, np.ndarray]) -> np.ndarray:
    with runner:
        return runner.infer(feed)["images"]


@pytest.mark.parametrize(("streams", "batch"), [(2, 7), (3, 5), (2, 1)])
def test_streams_match_one_copy(tiny_onnx: ExportReport, streams: int, batch: int) -> None:
    """Uneven shares and a batch smaller than the streams both map back in order."""
    with OnnxRuntimeRunner(tiny_onnx.path, threads=1) as one:
        feed = random_feed(one.inputs, batch, num_classes=10, seed=3)
        expected = one.infer(feed)["images"]
    streamed = StreamedRunner(
        lambda t: OnnxRuntimeRunner(tiny_onnx.path, threads=t),
        streams,
        path=tiny_onnx.path,
    )
    found = _images(streamed, feed)
    assert found.shape == expected.shape
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-6)
    # each sample is its own: reversing the batch reverses the images
    reversed_feed = {k: v[::-1].copy() for k, v in feed.items()}
    np.testing.assert_allclose(_images(streamed, reversed_feed), expected[::-1], atol=1e-6)


def test_open_runner_streams(tiny_onnx: ExportReport) -> None:
    runner = open_runner(tiny_onnx.path, streams=2, threads=1)
    assert isinstance(runner, StreamedRunner)
    with runner:
        assert runner.name == "onnxruntime" and runner.streams == 2
        assert [s.name for s in runner.inputs] == ["x1", "x2"]
        assert runner.version() == OnnxRuntimeRunner.version()
    assert not isinstance(open_runner(tiny_onnx.path, streams=1), StreamedRunner)


def test_stream_errors(tiny_onnx: ExportReport, tiny_aoti: CompileReport) -> None:
    def ort(t: int) -> OnnxRuntimeRunner:
        return OnnxRuntimeRunner(tiny_onnx.path, threads=t)

    with pytest.raises(BigBiGANError, match="--streams 1: expected an integer >= 2"):
        StreamedRunner(ort, 1, path=tiny_onnx.path)
    with pytest.raises(BigBiGANError, match="streams are for the CPU"):
        StreamedRunner(ort, 2, path=tiny_onnx.path, device="cuda")
    with pytest.raises(BigBiGANError, match="aoti backend runs calls from several threads"):
        open_runner(tiny_aoti.path, streams=2)


@pytest.fixture
def static_model(tiny_onnx: ExportReport, tmp_path: Path) -> Path:
    """The tiny generator with its batch fixed at 4."""
    import onnx

    from bigbigan.runtimes.ascend import static_onnx

    path = tmp_path / "G_static.onnx"
    onnx.save(static_onnx(onnx.load(str(tiny_onnx.path)), 4), str(path))
    return path


@pytest.mark.parametrize(
    ("option", "flag"), [({"streams": 2}, "--streams 2"), ({"micro_batch": 2}, "--micro-batch 2")]
)
def test_splitting_refuses_a_static_batch(static_model: Path, option: dict, flag: str) -> None:
    runner = open_runner(static_model, **option)
    message = f"{flag} splits the batch, but input x1 has a static batch dimension"
    with pytest.raises(BigBiGANError, match=message):
        runner.load()
    assert not runner.is_loaded


def test_infer_with_streams(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    one = infer(tiny_onnx.path, None, tmp_path / "one", batch=6, threads=1)
    two = infer(
        tiny_onnx.path, None, tmp_path / "two", batch=6, streams=2, summary=tmp_path / "s.json"
    )
    np.testing.assert_allclose(two.arrays["images"], one.arrays["images"], atol=1e-6)
    doc = json.loads((tmp_path / "s.json").read_text())
    validate_summary(doc)
    assert doc["backend"]["streams"] == 2 and doc["arguments"]["streams"] == 2
    assert two.backend == "onnxruntime, 2 streams"
    with pytest.raises(BigBiGANError, match="--streams 0"):
        infer(tiny_onnx.path, None, None, batch=2, streams=0)


@pytest.mark.parametrize(("size", "slices"), [(2, [2, 2, 1]), (5, [5]), (8, [5])])
def test_micro_batch_slices_in_order(tiny_onnx: ExportReport, size: int, slices: list) -> None:
    with OnnxRuntimeRunner(tiny_onnx.path, threads=1) as whole:
        feed = random_feed(whole.inputs, 5, num_classes=10, seed=4)
        expected = whole.infer(feed)["images"]
    runner = open_runner(tiny_onnx.path, threads=1, micro_batch=size)
    with runner:
        seen: list[int] = []
        impl = runner._infer_impl
        runner._infer_impl = lambda f: seen.append(len(f["x1"])) or impl(f)  # type: ignore
        found = runner.infer(feed)["images"]
    assert seen == slices
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-6)


def test_micro_batch_errors_and_infer(tiny_onnx: ExportReport, tmp_path: Path) -> None:
    with pytest.raises(BigBiGANError, match="--micro-batch -1: expected 0"):
        open_runner(tiny_onnx.path, micro_batch=-1)
    one = infer(tiny_onnx.path, None, tmp_path / "one", batch=6, threads=1)
    sliced = infer(
        tiny_onnx.path, None, None, batch=6, streams=2, micro_batch=2, summary=tmp_path / "s.json"
    )
    np.testing.assert_allclose(sliced.arrays["images"], one.arrays["images"], atol=1e-6)
    assert sliced.backend == "onnxruntime, 2 streams, micro-batch 2"
    doc = json.loads((tmp_path / "s.json").read_text())
    validate_summary(doc)
    assert doc["arguments"]["micro_batch"] == 2


def test_cli_micro_batch(
    tiny_onnx: ExportReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = tmp_path / "s.json"
    argv = ["infer", "--model", str(tiny_onnx.path), "--batch", "5", "--summary", str(summary)]
    assert main([*argv, "--micro-batch", "2"]) == 0
    assert "micro-batch 2" in capsys.readouterr().out
    assert json.loads(summary.read_text())["arguments"]["micro_batch"] == 2
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--micro-batch", "-1"])
    assert exit_info.value.code == 2 and "--micro-batch" in capsys.readouterr().err
