"""ONNX Runtime: `.onnx` models and offline-optimised `.ort` (ORT format) models, CPU or CUDA."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec
from bigbigan.runtimes.base import Runner, cuda_index

# ONNX Runtime's type strings -> numpy dtype names.
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}
ORT_FORMAT_ID = b"ORTM"  # flatbuffer file identifier of an ORT-format model, at bytes 4..8
LEVELS = ("disable", "basic", "extended", "all")


def import_onnxruntime() -> ModuleType:
    try:
        import onnxruntime
    except ImportError:
        raise BigBiGANError(
            "ONNX Runtime is not installed: pip install onnxruntime (or onnxruntime-gpu)"
        ) from None
    return onnxruntime


def graph_level(level: str) -> Any:
    """`"all"` -> GraphOptimizationLevel.ORT_ENABLE_ALL, and so on."""
    ort = import_onnxruntime()
    names = {
        "disable": "ORT_DISABLE_ALL",
        "basic": "ORT_ENABLE_BASIC",
        "extended": "ORT_ENABLE_EXTENDED",
        "all": "ORT_ENABLE_ALL",
    }
    if level not in names:
        raise BigBiGANError(f"optimization level {level!r}: expected one of {LEVELS}")
    return getattr(ort.GraphOptimizationLevel, names[level])


def providers_for(device: str, flag: str = "--device") -> list:
    """Execution providers for `device`: CPU, or CUDA (with CPU for what CUDA lacks)."""
    ort = import_onnxruntime()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise BigBiGANError(
            f"{flag} {device}: this onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu"
        )
    return [("CUDAExecutionProvider", {"device_id": cuda_index(device)}), "CPUExecutionProvider"]


def spec_from_ort(arg: Any) -> TensorSpec:
    """A TensorSpec from an onnxruntime NodeArg; symbolic or unknown dims become None."""
    name, type_, shape = arg.name, arg.type, arg.shape
    if type_ not in ORT_DTYPES:
        raise BigBiGANError(f"model tensor {name}: type {type_} has no numpy equivalent")
    dims = tuple(d if isinstance(d, int) and d >= 0 else None for d in shape)
    return TensorSpec(name, ORT_DTYPES[type_], dims)


def check_model_file(path: Path) -> None:
    """Reject a file that is not a readable ONNX protobuf (`.onnx`) or ORT flatbuffer (`.ort`)."""
    if not path.is_file():
        raise BigBiGANError(f"{path}: no such file")
    if path.suffix.lower() == ".ort":
        with path.open("rb") as f:
            head = f.read(8)
        if len(head) < 8 or head[4:8] != ORT_FORMAT_ID:
            raise BigBiGANError(f"{path}: not an ORT-format model (no ORTM identifier)")
        return
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), format="protobuf", load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise BigBiGANError(f"{path}: not a valid ONNX model ({type(e).__name__})") from None
    if model.ir_version <= 0 or not model.graph.node or not model.graph.output:
        raise BigBiGANError(f"{path}: not a valid ONNX model (no ir_version, nodes or outputs)")


class OnnxRuntimeRunner(Runner):
    """An `.onnx` or `.ort` model in an ONNX Runtime InferenceSession.

    `threads` sets intra_op_num_threads; `optimization_level` ("disable", "basic", "extended",
    "all") the session's graph optimisation (an offline-optimised model needs none again).
    """

    name = "onnxruntime"
    suffixes = (".onnx", ".ort")

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        optimization_level: str = "all",
    ) -> None:
        super().__init__(path, device=device, threads=threads)
        if optimization_level not in LEVELS:
            raise BigBiGANError(
                f"optimization level {optimization_level!r}: expected one of {LEVELS}"
            )
        self.optimization_level = optimization_level
        self._session = None

    @classmethod
    def version(cls) -> str:
        return import_onnxruntime().__version__

    @classmethod
    def check_file(cls, path: Path) -> None:
        check_model_file(path)

    def _load_impl(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = graph_level(self.optimization_level)
        options.log_severity_level = 3  # errors only; failures surface as exceptions below
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        try:
            self._session = ort.InferenceSession(
                str(self.path), options, providers=providers_for(self.device)
            )
        except Exception as e:  # onnxruntime raises its own, unexported exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BigBiGANError(f"{self.path}: ONNX Runtime cannot load it: {first}") from None
        inputs = [spec_from_ort(arg) for arg in self._session.get_inputs()]
        outputs = [spec_from_ort(arg) for arg in self._session.get_outputs()]
        return inputs, outputs

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [spec.name for spec in self.outputs]
        try:
            values = self._session.run(names, feed)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BigBiGANError(f"{self.path}: ONNX Runtime failed: {first}") from None
        return dict(zip(names, values, strict=True))

    def _close_impl(self) -> None:
        self._session = None
