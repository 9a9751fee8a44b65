"""TensorRT: a serialized engine (`.engine`/`.plan`) built by `bigbigan compile --target tensorrt`.

Only where the `tensorrt` Python package imports (and a CUDA GPU is visible); device buffers are
torch CUDA tensors, so no pycuda is needed. Written against the TensorRT 10 name-based tensor API.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bigbigan.documents import sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec, specs_to_json
from bigbigan.runtimes.base import Runner, cuda_index, require_cuda
from bigbigan.runtimes.build import (
    CompileJob,
    CompileReport,
    compiled_meta,
    staged,
    validate,
    write_sidecar,
)
from bigbigan.runtimes.registry import builder, register_runner, register_target

NOT_INSTALLED = (
    "TensorRT is not installed (the tensorrt Python package does not import); on a machine with "
    "an NVIDIA GPU: pip install tensorrt, or use --backend onnxruntime / aoti"
)


def import_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except ImportError as err:
        raise BigBiGANError(NOT_INSTALLED) from err
    return tensorrt


def deserialize(path: Path, device: str = "cuda") -> tuple[Any, Any]:
    """(runtime, engine) from an engine file; a file TensorRT cannot read is an error naming it."""
    trt = import_tensorrt()
    require_cuda(device, "TensorRT")
    import torch

    torch.cuda.set_device(cuda_index(device))
    logger = trt.Logger(trt.Logger.ERROR)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise BigBiGANError(
            f"{path}: not a TensorRT engine this TensorRT {trt.__version__} can read "
            "(garbage, or built by another TensorRT version or GPU)"
        )
    return runtime, engine


@register_runner
class TensorRTRunner(Runner):
    """A serialized TensorRT engine, run with `execute_async_v3` on torch's current CUDA stream
    (so the input copies, the launch and the output copies are ordered on one stream)."""

    name = "tensorrt"
    suffixes = (".engine", ".plan")

    def __init__(
        self, path: str | Path, *, device: str = "cuda", threads: int | None = None
    ) -> None:
        super().__init__(path, device=device, threads=threads)
        self._runtime = self._engine = self._context = None

    @classmethod
    def version(cls) -> str:
        return import_tensorrt().__version__

    @classmethod
    def check_file(cls, path: Path) -> None:
        if not path.is_file():
            raise BigBiGANError(f"{path}: no such file")
        import_tensorrt()  # a clear message before anything else when TensorRT is missing
        if path.stat().st_size < 64:
            raise BigBiGANError(f"{path}: {path.stat().st_size} bytes, too small for an engine")

    def _load_impl(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        trt = import_tensorrt()
        if not self.device.startswith("cuda"):
            raise BigBiGANError(f"--device {self.device}: TensorRT runs only on cuda")
        self._runtime, self._engine = deserialize(self.path, self.device)
        self._context = self._engine.create_execution_context()
        inputs, outputs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).name
            shape = tuple(d if d >= 0 else None for d in self._engine.get_tensor_shape(name))
            spec = TensorSpec(name, dtype, shape)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (inputs if is_input else outputs).append(spec)
        return inputs, outputs

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        keep = []  # device buffers must outlive the launch
        for spec in self.inputs:
            tensor = torch.from_numpy(feed[spec.name]).to(self.device)
            keep.append(tensor)
            self._context.set_input_shape(spec.name, tuple(tensor.shape))
            self._context.set_tensor_address(spec.name, tensor.data_ptr())
        results = {}
        for spec in self.outputs:
            shape = tuple(self._context.get_tensor_shape(spec.name))
            dtype = getattr(torch, spec.dtype)
            tensor = torch.empty(shape, dtype=dtype, device=self.device)
            results[spec.name] = tensor
            self._context.set_tensor_address(spec.name, tensor.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise BigBiGANError(f"{self.path}: TensorRT execution failed")
        stream.synchronize()
        del keep
        return {name: tensor.cpu().numpy() for name, tensor in results.items()}

    def _close_impl(self) -> None:
        self._context = self._engine = self._runtime = None


# ---- compile target `tensorrt` ----

register_target("tensorrt", suffixes=(".engine", ".plan"), artifact="G.engine")


@builder("tensorrt", "fp32")
def _build_tensorrt(job: CompileJob) -> CompileReport:
    """Parse the ONNX with TensorRT's ONNX parser and build a serialized engine for this GPU.

    fp32 means fp32: TF32 is switched off. A dynamic batch gets one optimisation profile
    (1, `batch` or 256, `max_batch`).
    """
    trt = import_tensorrt()
    if not job.device.startswith("cuda"):
        raise BigBiGANError(
            f"--device {job.device}: TensorRT builds engines for a CUDA GPU; pass --device cuda"
        )
    require_cuda(job.device, "TensorRT")
    import torch

    torch.cuda.set_device(cuda_index(job.device))
    logger = trt.Logger(trt.Logger.ERROR)
    started = time.perf_counter()
    builder_ = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder_.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(job.onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BigBiGANError(f"{job.onnx_path}: TensorRT's ONNX parser rejects it: {errors}")
    config = builder_.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if job.dynamic:
        opt = min(job.batch or 256, job.max_batch)
        profile = builder_.create_optimization_profile()
        for spec in job.inputs:
            rest = tuple(d if d is not None else 1 for d in spec.shape[1:])
            profile.set_shape(spec.name, (1, *rest), (opt, *rest), (job.max_batch, *rest))
        config.add_optimization_profile(profile)
    serialized = builder_.build_serialized_network(network, config)
    if serialized is None:
        raise BigBiGANError(f"{job.out}: TensorRT could not build an engine (see its log above)")
    seconds = time.perf_counter() - started
    with staged(job.out) as path:
        path.write_bytes(bytes(serialized))
        report = CompileReport("tensorrt", job.precision, job.out, seconds)
        report.note = f"TensorRT {trt.__version__}, {torch.cuda.get_device_name()}, TF32 off"
        report.max_abs_diff = validate(job, TensorRTRunner, path, batch=job.batch or 4)
        report.sidecar = sidecar_path(job.out)
        meta = compiled_meta(job, report, inputs=specs_to_json(job.inputs))
        meta["outputs"] = specs_to_json(job.outputs)
        write_sidecar(path, meta)
    return report
