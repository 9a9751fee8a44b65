"""OpenVINO: an IR model (`.xml` + `.bin`, from `bigbigan compile --target openvino`) or, with
`--backend openvino`, an `.onnx` model, compiled for the CPU at load time.

`precision` picks the inference precision hint ("fp32", or "bf16", which the CPU plugin runs on
AMX or AVX-512 BF16 where the CPU has them, and as fp32 elsewhere); an IR's sidecar
(`G.xml.json`) carries the hint it was compiled for and its tensor names. The fp32 target
rewrites the upsampling first (model/rewrite.py: measured 1.26x at ch=64, batch 256); bf16 keeps
the exported graph, where the rewrite measured no gain.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bigbigan.documents import sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import read_json_document
from bigbigan.interface import TensorSpec, specs_from_json, specs_to_json
from bigbigan.runtimes.base import Runner
from bigbigan.runtimes.build import (
    REDUCED_VALIDATE_BATCH,
    SIDECAR_FORMAT,
    CompileJob,
    CompileReport,
    accuracy,
    compiled_meta,
    first_line,
    reduced_meta,
    rewrites_note,
    staged,
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

HINTS = {"fp32": "f32", "bf16": "bf16"}  # our precision names -> INFERENCE_PRECISION_HINT


def import_openvino() -> ModuleType:
    try:
        import openvino
    except ImportError as err:
        raise BigBiGANError(
            "OpenVINO is not installed: pip install openvino (or 'bigbigan[perf]')"
        ) from err
    return openvino


def _spec(port: Any) -> TensorSpec:
    """A TensorSpec from an OpenVINO model port; dynamic dims become None."""
    dims = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
    dtype = np.dtype(port.get_element_type().to_dtype()).name
    return TensorSpec(port.get_any_name(), dtype, dims)


def read_ir_sidecar(path: Path) -> dict[str, Any] | None:
    """An IR's sidecar (interface parsed into TensorSpecs), or None for an IR made elsewhere."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    meta = read_json_document(sidecar, SIDECAR_FORMAT)
    if meta.get("precision") not in HINTS:
        raise BigBiGANError(f"{sidecar}: precision {meta.get('precision')!r}, expected fp32/bf16")
    meta["inputs"] = specs_from_json(meta.get("inputs"), f"{sidecar} inputs")
    meta["outputs"] = specs_from_json(meta.get("outputs"), f"{sidecar} outputs")
    return meta


@register_runner
class OpenVINORunner(Runner):
    """An `.xml` or `.onnx` model in OpenVINO's CPU plugin (latency hint: one request uses every
    thread). `threads` sets INFERENCE_NUM_THREADS; `precision` the inference precision hint
    (default: the IR sidecar's, else fp32)."""

    name = "openvino"
    suffixes = (".xml",)  # an .onnx opens in ONNX Runtime unless --backend openvino
    concurrent = False  # two threads' calls run one at a time (measured)

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        precision: str | None = None,
    ) -> None:
        super().__init__(path, device=device, threads=threads)
        if precision is not None and precision not in HINTS:
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
        else:
            read_ir_sidecar(path)

    def _load_impl(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        ov = import_openvino()
        meta = read_ir_sidecar(self.path) if self.path.suffix.lower() == ".xml" else None
        self.precision = self.precision or (meta["precision"] if meta else "fp32")
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": HINTS[self.precision],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            core = ov.Core()
            model = core.read_model(str(self.path))
            self._compiled = core.compile_model(model, "CPU", config)
            self._request = self._compiled.create_infer_request()
        except Exception as e:  # OpenVINO raises RuntimeError with multi-line C++ context
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BigBiGANError(f"{self.path}: OpenVINO cannot compile it: {first}") from e
        inputs = [_spec(port) for port in self._compiled.inputs]
        outputs = [_spec(port) for port in self._compiled.outputs]
        # A compiled port may also carry a fused later tensor's name (x2 as `_to_copy`): names
        # come from the sidecar, the ONNX, or else the model as read; shapes from the compiled.
        names = (meta["inputs"], meta["outputs"]) if meta else None
        if self.path.suffix.lower() == ".onnx":
            import onnx

            from bigbigan.interface import onnx_specs

            names = onnx_specs(onnx.load(str(self.path), load_external_data=False))
        if names is None:
            names = [_spec(port) for port in model.inputs], [_spec(port) for port in model.outputs]
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
            raise BigBiGANError(f"{self.path}: OpenVINO failed: {first}") from e
        # The request reuses its output buffers: copy before the next call.
        return {
            spec.name: np.array(results[port], copy=True)
            for spec, port in zip(self.outputs, self._compiled.outputs, strict=True)
        }

    def _close_impl(self) -> None:
        self._request = None
        self._compiled = None


# ---- compile target `openvino` ----

register_target("openvino", suffixes=(".xml",), artifact="G.xml")


@builder("openvino", "bf16")
@builder("openvino", "fp32")
def _build_openvino(job: CompileJob) -> CompileReport:
    """Convert the ONNX (fp32: upsampling rewritten) to OpenVINO IR, `G.xml` + `G.bin` with the
    weights kept fp32; the precision hint and tensor names go into `G.xml.json`, which the
    runner applies at load. Validated in OpenVINO with that hint against the source ONNX."""
    import onnx

    from bigbigan.model.rewrite import rewrite_upsampling

    ov = import_openvino()
    if job.device != "cpu":
        raise BigBiGANError(f"--device {job.device}: target openvino is for the CPU")
    source = onnx.load(str(job.onnx_path))
    rewrites = rewrite_upsampling(source) if job.rewrite and not job.reduced else {}
    with staged(job.out, companions=(".bin",)) as path:
        onnx_path = path.with_name("source.onnx")
        onnx.save_model(source, str(onnx_path))
        started = time.perf_counter()
        try:
            model = ov.convert_model(str(onnx_path))
            ports, specs = [*model.inputs, *model.outputs], [*job.inputs, *job.outputs]
            for port, spec in zip(ports, specs, strict=True):
                port.get_tensor().set_names({spec.name})  # the IR declares the ONNX's names
            ov.save_model(model, str(path), compress_to_fp16=False)
        except Exception as e:  # OpenVINO's frontends raise RuntimeError and friends
            msg = f"{job.onnx_path}: OpenVINO cannot convert it: {first_line(e)}"
            raise BigBiGANError(msg) from e
        report = CompileReport("openvino", job.precision, job.out, time.perf_counter() - started)
        onnx_path.unlink()
        report.note = f"OpenVINO {ov.__version__} IR, INFERENCE_PRECISION_HINT {job.precision}"
        if job.reduced and "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            report.note += " (this CPU has no bf16: OpenVINO runs it in fp32 here)"
        report.note += rewrites_note(rewrites)
        report.sidecar = sidecar_path(job.out)
        meta = compiled_meta(job, report, rewrites=rewrites, inputs=specs_to_json(job.inputs))
        meta["outputs"] = specs_to_json(job.outputs)
        write_sidecar(path, meta)  # the runner reads the hint and names from it
        batch = job.batch or (REDUCED_VALIDATE_BATCH if job.reduced else 4)
        report.max_abs_diff, mean_abs = accuracy(job, OpenVINORunner, path, batch)
        meta["max_abs_diff_vs_source"] = report.max_abs_diff
        if job.reduced:
            report.mean_abs_diff = mean_abs
            meta.update(reduced_meta(job, report))
        write_sidecar(path, meta)
    return report


@bench_rows("openvino")
def _openvino_rows(settings: BenchSettings) -> list[BenchRow]:
    """`compile --target openvino` IRs in fp32 and bf16 (CPU)."""
    if settings.cuda:
        return []
    note = "IR from compile --target openvino, INFERENCE_PRECISION_HINT {}"
    return [
        BenchRow("openvino", p, model="openvino", artifact=f"G.{p}.xml", note=note.format(p))
        for p in ("fp32", "bf16")
        if p in settings.precisions
    ]
