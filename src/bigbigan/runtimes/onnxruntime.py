"""ONNX Runtime: `.onnx` models and offline-optimised `.ort` (ORT format) models, CPU or CUDA.

Compile target `ort`: fp32 rewrites the upsampling (model/rewrite.py) and saves ONNX Runtime's
optimised graph (`.onnx` or `.ort`); int8 is static post-training quantisation (QDQ; the
format and the layers kept in fp32 chosen per CPU, bigbigan.quantize; its builder is
runtimes/onnxruntime_int8.py, imported when used). Bench rows: the plain
export (`onnxruntime fp32`, every ratio's reference) and the `ort` artifacts, each also as
`streams` single-thread copies on the CPU.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bigbigan.documents import sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec, specs_to_json
from bigbigan.quantize import ort_int8_format
from bigbigan.runtimes.base import Runner, cuda_index
from bigbigan.runtimes.build import (
    CompileJob,
    CompileReport,
    compiled_meta,
    first_line,
    rewrites_note,
    staged,
    validate,
    write_sidecar,
)
from bigbigan.runtimes.registry import (
    BenchRow,
    BenchSettings,
    bench_rows,
    builder,
    register_runner,
    register_target,
)

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
    except ImportError as err:
        raise BigBiGANError(
            "ONNX Runtime is not installed: pip install onnxruntime (or onnxruntime-gpu)"
        ) from err
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
    except (DecodeError, ValueError, RuntimeError, OSError) as err:
        raise BigBiGANError(f"{path}: not a valid ONNX model ({type(err).__name__})") from err
    if model.ir_version <= 0 or not model.graph.node or not model.graph.output:
        raise BigBiGANError(f"{path}: not a valid ONNX model (no ir_version, nodes or outputs)")


@register_runner
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
        except Exception as err:  # onnxruntime raises its own, unexported exception types
            msg = f"{self.path}: ONNX Runtime cannot load it: {first_line(err)}"
            raise BigBiGANError(msg) from err
        inputs = [spec_from_ort(arg) for arg in self._session.get_inputs()]
        outputs = [spec_from_ort(arg) for arg in self._session.get_outputs()]
        return inputs, outputs

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [spec.name for spec in self.outputs]
        try:
            values = self._session.run(names, feed)
        except Exception as err:
            raise BigBiGANError(f"{self.path}: ONNX Runtime failed: {first_line(err)}") from err
        return dict(zip(names, values, strict=True))

    def _close_impl(self) -> None:
        self._session = None


# ---- compile target `ort` ----

register_target("ort", suffixes=(".onnx", ".ort"), artifact="G.ort.onnx")


@builder("ort", "fp32")
def _build_ort(job: CompileJob) -> CompileReport:
    """Rewrite the upsampling (model/rewrite.py), then let ONNX Runtime optimise the graph once
    and save it (`optimized_model_filepath`).

    Every level saves on the CPU. "all" adds the NCHWc layout transforms, whose blocked
    convolutions depend on this CPU's vector width (ORT warns the file should run only where it
    was made); "extended" stops before them and is portable across machines.
    """
    import onnx

    from bigbigan.model.rewrite import rewrite_upsampling

    ort = import_onnxruntime()
    fmt = "ORT" if job.out.suffix.lower() == ".ort" else "ONNX"
    source = onnx.load(str(job.onnx_path))
    rewrites = rewrite_upsampling(source) if job.rewrite else {}
    with staged(job.out) as path:
        options = ort.SessionOptions()
        options.graph_optimization_level = graph_level(job.ort_level)
        options.optimized_model_filepath = str(path)
        options.add_session_config_entry("session.save_model_format", fmt)
        options.log_severity_level = 3  # the hardware-specific warning goes into the note
        started = time.perf_counter()
        try:
            ort.InferenceSession(
                source.SerializeToString(), options, providers=providers_for(job.device)
            )
        except Exception as err:
            raise BigBiGANError(
                f"{job.onnx_path}: ONNX Runtime cannot optimise it: {first_line(err)}"
            ) from err
        seconds = time.perf_counter() - started
        if not path.is_file() or not path.stat().st_size:
            raise BigBiGANError(f"{job.out}: ONNX Runtime wrote nothing")
        max_abs = validate(job, OnnxRuntimeRunner, path, batch=job.batch or 4)
        note = f"ONNX Runtime {ort.__version__}, level {job.ort_level}, {fmt} format"
        note += rewrites_note(rewrites)
        if job.ort_level == "all":
            note += "; holds layout optimisations specific to this CPU: run it where it was made"
        report = CompileReport("ort", job.precision, job.out, seconds, None, note, max_abs)
        report.sidecar = sidecar_path(job.out)
        meta = compiled_meta(
            job, report, level=job.ort_level, file_format=fmt, rewrites=dict(rewrites)
        )
        meta["inputs"], meta["outputs"] = specs_to_json(job.inputs), specs_to_json(job.outputs)
        write_sidecar(path, meta)
    return report


@builder("ort", "int8")
def _build_ort_int8(job: CompileJob) -> CompileReport:
    """Static post-training quantisation (runtimes/onnxruntime_int8.py, imported when used)."""
    from bigbigan.runtimes.onnxruntime_int8 import build_ort_int8

    return build_ort_int8(job)


# ---- bench rows ----


def _with_streams(row: BenchRow, settings: BenchSettings) -> list[BenchRow]:
    """`row`, and on the CPU the same model as `streams` single-thread copies."""
    if settings.streams <= 1 or settings.cuda:
        return [row]
    streamed = replace(
        row,
        variant=f"{settings.streams} streams",
        options={**row.options, "streams": settings.streams},
        min_batch=settings.streams,
        note=f"{row.note}; batch split across {settings.streams} copies, 1 thread each",
    )
    return [row, streamed]


@bench_rows("onnxruntime")
def _onnxruntime_rows(settings: BenchSettings) -> list[BenchRow]:
    """The plain export in a default session: the row every speed ratio divides by."""
    if "fp32" not in settings.precisions:
        return []
    row = BenchRow("onnxruntime", "fp32", runner="onnxruntime", note="plain export, defaults")
    return _with_streams(row, settings)


@bench_rows("ort")
def _ort_rows(settings: BenchSettings) -> list[BenchRow]:
    """`compile --target ort` artifacts (CPU): fp32 loaded as is, int8 fused at load."""
    if settings.cuda:
        return []
    rows = []
    if "fp32" in settings.precisions:
        fp32 = BenchRow(
            "ort",
            "fp32",
            model="ort",
            artifact="G.ort.onnx",
            runner="onnxruntime",
            options={"optimization_level": "disable"},
            note="upsampling rewritten, offline-optimised (level all), loaded as is",
        )
        rows += _with_streams(fp32, settings)
    if "int8" in settings.precisions:
        int8 = BenchRow(
            "ort",
            "int8",
            model="ort",
            artifact="G.int8.onnx",
            runner="onnxruntime",
            note=f"static QDQ, per-channel, {ort_int8_format().name}",  # this CPU's
        )
        rows += _with_streams(int8, settings)
    return rows
