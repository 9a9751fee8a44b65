"""The runner contract, run against every backend available here, and the file checks."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bigbigan.compile import CompileReport
from bigbigan.errors import BigBiGANError
from bigbigan.export import ExportReport
from bigbigan.interface import TensorSpec
from bigbigan.runtimes import (
    RUNNERS,
    AOTIRunner,
    OnnxRuntimeRunner,
    Runner,
    TensorRTRunner,
    TorchRunner,
    backend_for,
    open_runner,
)

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _feed(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x1": rng.standard_normal((batch, 100), dtype=np.float32).clip(-2, 2),
        "x2": rng.integers(0, 10, batch).astype(np.int32),
    }


@pytest.fixture(
    params=[
        "torch",
        "onnxruntime-onnx",
        "onnxruntime-ort",
        pytest.param("aoti", marks=pytest.mark.slow),
    ]
)
def model_file(request: pytest.FixtureRequest, tiny_checkpoint: Path) -> tuple[str, Path]:
    """(expected backend, model file) for each backend this machine runs."""
    kind = request.param
    if kind == "torch":
        return "torch", tiny_checkpoint
    if kind == "onnxruntime-onnx":
        return "onnxruntime", request.getfixturevalue("tiny_onnx").path
    if kind == "onnxruntime-ort":
        return "onnxruntime", request.getfixturevalue("tiny_ort").path
    return "aoti", request.getfixturevalue("tiny_aoti").path


def test_runner_contract(model_file: tuple[str, Path], tiny_checkpoint: Path) -> None:
    backend, path = model_file
    assert backend_for(path) == backend
    runner = open_runner(path)
    assert isinstance(runner, RUNNERS[backend]) and not runner.is_loaded
    assert isinstance(type(runner).version(), str) and type(runner).version()

    with pytest.raises(BigBiGANError, match="before load"):
        runner.infer(_feed(2))
    with runner:
        # Metadata: the model's own names, dtypes and shapes (batch dynamic).
        assert [(s.name, s.dtype) for s in runner.inputs] == [("x1", "float32"), ("x2", "int32")]
        assert [s.shape[1:] for s in runner.inputs] == [(100,), ()]
        assert [(s.name, s.dtype) for s in runner.outputs] == [("images", "float32")]
        assert runner.outputs[0].shape[1:] == (32, 32, 1)
        assert runner.load_seconds is not None and runner.load_seconds >= 0
        runner.synchronize()

        feed = _feed(3)
        first = runner.infer(feed)
        assert list(first) == ["images"]
        images = first["images"]
        assert images.shape == (3, 32, 32, 1) and images.dtype == np.float32
        assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
        assert runner.infer(feed)["images"].tobytes() == images.tobytes()  # deterministic
        assert runner.infer(_feed(1, seed=5))["images"].shape == (1, 32, 32, 1)

        with TorchRunner(tiny_checkpoint) as reference:
            expected = reference.infer(feed)["images"]
        assert np.abs(images - expected).mean() <= 1e-5
        assert np.abs(images - expected).max() <= 1e-4

        # The base class validates every feed, the same way for every backend.
        with pytest.raises(BigBiGANError, match=r"missing input x2.*\['x1', 'x2'\]"):
            runner.infer({"x1": feed["x1"]})
        with pytest.raises(BigBiGANError, match="unexpected input x3"):
            runner.infer({**feed, "x3": feed["x2"]})
        with pytest.raises(BigBiGANError, match=r"input x2: dtype int64.*expects int32"):
            runner.infer({**feed, "x2": feed["x2"].astype(np.int64)})
        with pytest.raises(BigBiGANError, match=r"input x1: shape \[3, 99\].*expects \[\*, 100\]"):
            runner.infer({**feed, "x1": feed["x1"][:, :99].copy()})
        with pytest.raises(BigBiGANError, match=r"input x1: shape \[3\]"):
            runner.infer({**feed, "x1": feed["x1"][:, 0].copy()})
        with pytest.raises(BigBiGANError, match=r"input x2: batch 2, but input x1 has batch 3"):
            runner.infer({**feed, "x2": feed["x2"][:2]})
        with pytest.raises(BigBiGANError, match="input x1: expected a numpy array, found list"):
            runner.infer({**feed, "x1": feed["x1"].tolist()})
        # A non-contiguous view is accepted (copied once by the base class).
        wide = np.repeat(feed["x1"], 2, axis=1)[:, ::2]
        assert runner.infer({**feed, "x1": wide})["images"].tobytes() == images.tobytes()
    assert not runner.is_loaded
    with pytest.raises(BigBiGANError, match="before load"):
        runner.infer(feed)


def test_encoder_contract(tiny_checkpoint: Path, tiny_encoder_onnx: ExportReport) -> None:
    images = np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32)
    outputs = []
    for path, options in ((tiny_checkpoint, {"encoder": True}), (tiny_encoder_onnx.path, {})):
        with open_runner(path, **options) as runner:
            assert runner.inputs == [TensorSpec("x", "float32", (None, 32, 32, 1))]
            assert runner.outputs == [TensorSpec("z", "float32", (None, 100))]
            outputs.append(runner.infer({"x": images})["z"])
            with pytest.raises(BigBiGANError, match=r"input x: shape \[4, 32, 32, 3\]"):
                runner.infer({"x": np.zeros((4, 32, 32, 3), np.float32)})
    assert np.abs(outputs[0] - outputs[1]).mean() <= 1e-5
    with open_runner(tiny_checkpoint, role="encoder") as runner:
        assert runner.outputs[0].name == "z"


def test_unconditional_torch_runner(tiny_unconditional_checkpoint: Path) -> None:
    with open_runner(tiny_unconditional_checkpoint / "checkpoint.json") as runner:
        assert [s.name for s in runner.inputs] == ["x1"]
        assert runner.infer({"x1": _feed(2)["x1"]})["images"].shape == (2, 32, 32, 1)


def test_onnxruntime_options(tiny_onnx: ExportReport) -> None:
    feed = _feed(2)
    with open_runner(tiny_onnx.path, threads=1, optimization_level="disable") as runner:
        plain = runner.infer(feed)["images"]
    with open_runner(tiny_onnx.path, backend="onnxruntime") as runner:
        assert np.abs(runner.infer(feed)["images"] - plain).max() <= 1e-5
    with pytest.raises(BigBiGANError, match="optimization level 'fast'"):
        open_runner(tiny_onnx.path, optimization_level="fast")


def test_registry_and_versions() -> None:
    assert set(RUNNERS) == {"torch", "onnxruntime", "aoti", "tensorrt", "openvino"}
    assert RUNNERS["onnxruntime"] is OnnxRuntimeRunner and RUNNERS["aoti"] is AOTIRunner
    for name, cls in RUNNERS.items():
        assert issubclass(cls, Runner) and cls.name == name and cls.suffixes
    assert ".ort" in OnnxRuntimeRunner.suffixes and ".plan" in TensorRTRunner.suffixes
    import onnxruntime
    import torch

    assert OnnxRuntimeRunner.version() == onnxruntime.__version__
    assert TorchRunner.version() == AOTIRunner.version() == torch.__version__


# ---- files that are not what they say ----


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("G.onnx", b"\x00\xff garbage that is not a protobuf \xff" * 10, "not a valid ONNX model"),
        ("G.onnx", b"", "not a valid ONNX model"),
        ("G.ort", b"garbage!" * 10, "not an ORT-format model"),
        ("G.pt2", b"not a zip archive", "not an AOTInductor package"),
        ("G.bin", b"1234", "unknown model type '.bin'; expected a checkpoint directory"),
        ("G", b"1234", r"unknown model type '\(no extension\)'"),
    ],
)
def test_garbage_files_are_clear_errors(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BigBiGANError, match=message) as info:
        open_runner(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_garbage_engine(tmp_path: Path) -> None:
    path = tmp_path / "G.engine"
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(BigBiGANError, match="TensorRT"):
        open_runner(path).load()


def test_unknown_type_lists_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "G.tflite"  # (a .pb is a model: a frozen TensorFlow graph, imported)
    path.write_bytes(b"1234")
    with pytest.raises(BigBiGANError) as info:
        open_runner(path)
    for known in ("checkpoint.json (torch)", ".onnx/.ort (onnxruntime)", ".pt2 (aoti)", ".pb"):
        assert known in str(info.value)
    assert ".engine/.plan (tensorrt)" in str(info.value) and ".xml (openvino)" in str(info.value)


def test_pt2_needs_aoti_content_and_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "G.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("G/readme.txt", "hello")
    with pytest.raises(BigBiGANError, match="a zip archive, but not an AOTInductor package"):
        open_runner(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("G/data/aotinductor/model/x.wrapper.so", "")
    with pytest.raises(BigBiGANError, match=r"no sidecar G.pt2.json"):
        open_runner(path)
    (tmp_path / "G.pt2.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(BigBiGANError, match="expected format 'bigbigan-aoti'"):
        open_runner(path)
    (tmp_path / "G.pt2.json").write_text(json.dumps({"format": "bigbigan-aoti", "inputs": []}))
    with pytest.raises(BigBiGANError, match="inputs: expected"):
        open_runner(path)


def test_missing_paths_and_bad_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(BigBiGANError, match="no such file or directory"):
        open_runner(tmp_path / "nothing.onnx")
    with pytest.raises(BigBiGANError, match="no checkpoint.json found"):
        open_runner(tmp_path)
    (tmp_path / "checkpoint.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(BigBiGANError, match="expected format 'bigbigan-checkpoint'"):
        open_runner(tmp_path / "checkpoint.json")


def test_backend_and_option_errors(tiny_onnx: ExportReport, tiny_checkpoint: Path) -> None:
    with pytest.raises(BigBiGANError, match="--backend tflite: expected one of torch, onnxruntime"):
        open_runner(tiny_onnx.path, backend="tflite")
    with pytest.raises(BigBiGANError, match="backend onnxruntime takes no option encoder"):
        open_runner(tiny_onnx.path, encoder=True)
    with pytest.raises(BigBiGANError, match="not a valid ONNX model"):
        open_runner(tiny_checkpoint / "checkpoint.json", backend="onnxruntime")
    with pytest.raises(BigBiGANError, match="--device tpu"):
        open_runner(tiny_onnx.path, device="tpu")
    with pytest.raises(BigBiGANError, match="--threads 0"):
        open_runner(tiny_onnx.path, threads=0)
    runner = open_runner(tiny_onnx.path).load()
    with pytest.raises(BigBiGANError, match="already loaded"):
        runner.load()
    runner.close()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_tensorrt_absent_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BigBiGANError, match="TensorRT is not installed.*pip install tensorrt"):
        TensorRTRunner.version()
    engine = tmp_path / "G.plan"
    engine.write_bytes(b"\x00" * 256)
    with pytest.raises(BigBiGANError, match="TensorRT is not installed"):
        open_runner(engine)


def test_cuda_without_gpu_is_a_clear_error(tiny_onnx: ExportReport, tiny_checkpoint: Path) -> None:
    import onnxruntime
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    with pytest.raises(BigBiGANError, match="--device cuda: the torch backend needs a CUDA GPU"):
        open_runner(tiny_checkpoint, device="cuda").load()
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BigBiGANError, match="no CUDAExecutionProvider"):
            open_runner(tiny_onnx.path, device="cuda").load()


@pytest.mark.slow
def test_aoti_package_runs_only_on_its_device(tiny_aoti: CompileReport) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    with pytest.raises(BigBiGANError, match="compiled for cpu, cannot run on --device cuda"):
        open_runner(tiny_aoti.path, device="cuda").load()


def test_staged_call_hook(tiny_checkpoint: Path, tiny_onnx: ExportReport) -> None:
    """Runner.staged_call: the public hook phase timing uses (no private attributes)."""
    from bigbigan.runtimes.base import PHASES

    feed = _feed(3)
    runner = open_runner(tiny_checkpoint)
    with pytest.raises(BigBiGANError, match="before load"):
        runner.staged_call()
    with runner:
        assert runner.staged_call() is None  # the CPU has no transfer to time
        split = runner.staged_call(force=True)
        outputs, phases = split(feed)
        assert len(phases) == len(PHASES) == 3 and all(ms >= 0 for ms in phases)
        assert outputs["images"].tobytes() == runner.infer(feed)["images"].tobytes()
    with open_runner(tiny_onnx.path) as runner:
        assert runner.staged_call(force=True) is None  # ONNX Runtime cannot split a call
