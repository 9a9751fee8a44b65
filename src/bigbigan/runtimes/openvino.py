"""OpenVINO: an `.onnx` model (or OpenVINO IR `.xml`) compiled for the CPU at load time.

OpenVINO reads the exported ONNX directly; `precision` picks its inference precision hint
("fp32", or "bf16", which its CPU plugin runs on AMX or AVX-512 BF16 where the CPU has them).
Not in the RUNNERS registry: `bigbigan bench` opens it by class, and `open_runner(...,
backend="openvino")` would need the registry's tests widened first.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec
from bigbigan.runtimes.base import Runner

HINTS = {"fp32": "f32", "bf16": "bf16"}  # our precision names -> INFERENCE_PRECISION_HINT


def import_openvino() -> ModuleType:
    try:
        import openvino
    except ImportError:
        raise BigBiGANError(
            "OpenVINO is not installed: pip install openvino (or 'bigbigan[perf]')"
        ) from None
    return openvino


def _spec(port: Any) -> TensorSpec:
    """A TensorSpec from an OpenVINO model port; dynamic dims become None."""
    dims = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
    dtype = np.dtype(port.get_element_type().to_dtype()).name
    return TensorSpec(port.get_any_name(), dtype, dims)


class OpenVINORunner(Runner):
    """An `.onnx` or `.xml` model in OpenVINO's CPU plugin (latency hint: one request uses every
    thread). `threads` sets INFERENCE_NUM_THREADS; `precision` the inference precision hint."""

    name = "openvino"
    suffixes = (".xml", ".onnx")
    concurrent = False  # two threads' calls run one at a time (measured)

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        super().__init__(path, device=device, threads=threads)
        if precision not in HINTS:
            raise BigBiGANError(
                f"openvino precision {precision!r}: expected one of {', '.join(HINTS)}"
            )
        if device != "cpu":
            raise BigBiGANError(f"--device {device}: the openvino backend runs on the CPU only")
        self.precision = precision
        self._compiled = None
        self._request = None

    @classmethod
    def version(cls) -> str:
        return import_openvino().__version__

    @classmethod
    def check_file(cls, path: Path) -> None:
        if path.suffix.lower() == ".onnx":
            from bigbigan.runtimes.onnxruntime import check_model_file

            check_model_file(path)
        elif not path.is_file():
            raise BigBiGANError(f"{path}: no such file")
        elif path.suffix.lower() != ".xml":
            raise BigBiGANError(f"{path}: the openvino backend opens .onnx or .xml models")

    def _load_impl(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        ov = import_openvino()
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": HINTS[self.precision],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            core = ov.Core()
            self._compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
            self._request = self._compiled.create_infer_request()
        except Exception as e:  # OpenVINO raises RuntimeError with multi-line C++ context
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BigBiGANError(f"{self.path}: OpenVINO cannot compile it: {first}") from None
        inputs = [_spec(port) for port in self._compiled.inputs]
        outputs = [_spec(port) for port in self._compiled.outputs]
        if self.path.suffix.lower() == ".onnx":  # OpenVINO may name a port after a later tensor
            import onnx

            from bigbigan.interface import onnx_specs

            names = onnx_specs(onnx.load(str(self.path), load_external_data=False))
            inputs = [
                TensorSpec(n.name, s.dtype, s.shape) for n, s in zip(names[0], inputs, strict=True)
            ]
            outputs = [
                TensorSpec(n.name, s.dtype, s.shape) for n, s in zip(names[1], outputs, strict=True)
            ]
        return inputs, outputs

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            results = self._request.infer([feed[spec.name] for spec in self.inputs])
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BigBiGANError(f"{self.path}: OpenVINO failed: {first}") from None
        # The request reuses its output buffers: copy before the next call.
        return {
            spec.name: np.array(results[port], copy=True)
            for spec, port in zip(self.outputs, self._compiled.outputs, strict=True)
        }

    def _close_impl(self) -> None:
        self._request = None
        self._compiled = None
