"""Compile an exported ONNX model for the hardware it will run on.

Targets: `ort` (ONNX Runtime offline-optimised `.onnx` or `.ort`), `aoti` (AOTInductor `.pt2`,
rebuilt from the checkpoint the ONNX came from), `tensorrt` (`.engine`, where TensorRT is
installed) and `ascend` (a static-shape ONNX plus the `atc` command line, run when `atc` is on
PATH). Every artifact is validated against the source ONNX in ONNX Runtime before it is renamed
into place, and gets a JSON sidecar saying where it came from. fp32 `ort` and `aoti` builds first
rewrite the generator's upsampling into transposed convolutions (model/rewrite.py: exact, 2.25x
fewer multiply-adds in those layers; `rewrite=False` / `--no-rewrite` keeps the export's graph).

Builders are registered per (target, precision) in BUILDERS: fp32 for every target, and reduced
precision where it pays on the hardware: `ort` int8 (static post-training quantisation, QDQ,
per-channel), `aoti` bf16 (CPU and CUDA), fp16 (CUDA) and int8 (CPU, PT2E quantisation through
torchao). Reduced precision is validated against the fp32 source with the precision's own bounds
(PRECISION_LIMITS) and its accuracy cost, mean and max abs pixel difference, goes into the sidecar.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.documents import sidecar_path, write_document
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir, guard_output
from bigbigan.importers import is_frozen_graph, resolve_model
from bigbigan.interface import (
    ENCODER_INPUT,
    MAX_BATCH,
    TensorSpec,
    diff_stats,
    onnx_specs,
    quiet_exporter,
    random_feed,
    read_model_sidecar,
    specs_to_json,
)
from bigbigan.runtimes import trust
from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner, check_model_file, providers_for

TARGETS = ("ort", "aoti", "tensorrt", "ascend")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
SUFFIXES = {"ort": (".onnx", ".ort"), "aoti": (".pt2",), "tensorrt": (".engine", ".plan")}
SIDECAR_FORMAT = "bigbigan-compiled"
DEFAULT_ASCEND_BATCH = 256  # the original system's batch (docs/architecture.md)

# Accuracy bounds of reduced precision vs the fp32 source ONNX, on pixels in [0, 1]:
# (mean abs diff, max abs diff). The mean is the accuracy cost that matters (the performance
# targets: bf16 <= 5e-3, int8 <= 2e-2); the max only guards against broken output, because a
# few pixels can move far where a saturated activation is rounded or clipped (measured on a
# partly trained ch=16 model at batch 256: bf16 max 0.06, int8 max 0.58, means 1e-3 and 4e-3).
# A --tolerance above the max bound raises it.
PRECISION_LIMITS: dict[str, tuple[float, float]] = {
    "bf16": (5e-3, 0.25),
    "fp16": (2e-3, 0.1),
    "int8": (2e-2, 1.0),
}
REDUCED_VALIDATE_BATCH = 64  # reduced precision is judged on more samples than fp32's 4
CALIBRATION_SAMPLES = 512  # int8: generator inputs drawn from the training noise distribution
CALIBRATION_BATCH = 64
CALIBRATION_SEED = 1234  # not the validation seed (0): calibrate and validate on other samples
# Inductor options per precision. Freezing folds the weights into constants and lets Inductor
# pre-pack the convolutions for oneDNN; int8 needs it (the quantised patterns are lowered to
# oneDNN int8 kernels only when frozen). fp32 and bf16 measured within noise of each other with
# and without it (ch=64, batch 1/16/256, one process): fp32 keeps the plain build it always had,
# bf16/fp16 freeze like int8.
AOTI_CONFIGS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": {"freezing": True},
    "fp16": {"freezing": True},
    "int8": {"freezing": True},
}


@dataclass
class CompileReport:
    target: str
    precision: str
    path: Path  # the artifact (for ascend without atc: the static ONNX)
    seconds: float  # build time, validation excluded
    command: str | None = None  # ascend: the atc command line
    note: str = ""  # what a user should know (hardware-specific, not run, ...)
    max_abs_diff: float | None = None  # vs the source ONNX in ONNX Runtime, same inputs
    sidecar: Path | None = None
    mean_abs_diff: float | None = None  # reduced precision: its accuracy cost


@dataclass(frozen=True)
class CompileJob:
    """Everything a builder needs, resolved and checked by `compile_model`."""

    onnx_path: Path
    out: Path
    target: str
    precision: str
    device: str
    checkpoint: Path | None
    inputs: list[TensorSpec]  # the source ONNX's interface
    outputs: list[TensorSpec]
    source_meta: dict[str, Any] = field(default_factory=dict)  # the ONNX's sidecar, if any
    batch: int | None = None
    max_batch: int = MAX_BATCH
    soc_version: str = "Ascend310"
    ort_level: str = "all"
    tolerance: float = 1e-4
    inductor_configs: dict[str, Any] | None = None  # aoti: None = AOTI_CONFIGS[precision]
    rewrite: bool = True  # fp32 ort and aoti: the exact upsampling rewrites (model/rewrite.py)

    @property
    def num_classes(self) -> int | None:
        model = self.source_meta.get("model")
        return model.get("num_classes") if isinstance(model, dict) else None

    @property
    def dynamic(self) -> bool:
        return any(spec.shape and spec.shape[0] is None for spec in self.inputs)


Builder = Callable[[CompileJob], CompileReport]
BUILDERS: dict[tuple[str, str], Builder] = {}


def builder(target: str, precision: str = "fp32") -> Callable[[Builder], Builder]:
    """Register a builder for (target, precision)."""

    def register(func: Builder) -> Builder:
        BUILDERS[(target, precision)] = func
        return func

    return register


def compile_model(
    onnx_path: str | Path,
    *,
    target: str,
    out: str | Path,
    precision: str = "fp32",
    device: str = "cpu",
    checkpoint: str | Path | None = None,
    batch: int | None = None,
    max_batch: int = MAX_BATCH,
    soc_version: str = "Ascend310",
    ort_level: str = "all",
    tolerance: float = 1e-4,
    inductor_configs: dict[str, Any] | None = None,
    rewrite: bool = True,
) -> CompileReport:
    """Compile `onnx_path` for `target` into `out`; see the module docstring.

    `checkpoint` (aoti only) defaults to the one recorded in the ONNX's sidecar. `batch` is the
    static batch for ascend (default: the ONNX's own static batch, else 256) and the optimum
    batch of a TensorRT profile; `max_batch` bounds the dynamic batch of aoti and TensorRT.
    `ort_level` is the ONNX Runtime optimisation level ("basic", "extended", "all"). Outputs
    that differ from the source ONNX by more than `tolerance` (max abs) are not written; reduced
    precision has its own bounds (PRECISION_LIMITS). `inductor_configs` (aoti) replaces the
    precision's default Inductor options (AOTI_CONFIGS), e.g. `{"freezing": False}`.
    `rewrite=False` (fp32 ort and aoti) skips the upsampling rewrites (bigbigan.model.rewrite).
    """
    onnx_path, out = Path(onnx_path), Path(out)
    if target not in TARGETS:
        raise BigBiGANError(f"--target {target}: expected one of {', '.join(TARGETS)}")
    if (target, precision) not in BUILDERS:
        if precision not in PRECISIONS:
            raise BigBiGANError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
        supported = [p for t, p in BUILDERS if t == target]
        raise BigBiGANError(
            f"precision {precision} for target {target} is not supported yet "
            f"(supported: {', '.join(supported)})"
        )
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise BigBiGANError(f"--device {device}: expected cpu, cuda or cuda:N")
    for flag, value in (("--batch", batch), ("--max-batch", max_batch)):
        if value is not None and value < 1:
            raise BigBiGANError(f"{flag} {value}: expected a positive integer")
    if target in SUFFIXES and out.suffix.lower() not in SUFFIXES[target]:
        raise BigBiGANError(
            f"--out {out}: target {target} writes {' or '.join(SUFFIXES[target])} files"
        )
    if is_frozen_graph(onnx_path):
        onnx_path = resolve_model(onnx_path)  # a TensorFlow .pb: its cached ONNX import
    if onnx_path.suffix.lower() != ".onnx":
        raise BigBiGANError(
            f"{onnx_path}: expected an .onnx model (from `bigbigan export`) or a TensorFlow .pb"
        )
    check_model_file(onnx_path)
    if out.resolve() == onnx_path.resolve():
        raise BigBiGANError(f"--out {out}: would overwrite the source model")
    import onnx

    inputs, outputs = onnx_specs(onnx.load(str(onnx_path)))
    job = CompileJob(
        onnx_path=onnx_path,
        out=out,
        target=target,
        precision=precision,
        device=device,
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
        inputs=inputs,
        outputs=outputs,
        source_meta=read_model_sidecar(onnx_path) or {},
        batch=batch,
        max_batch=max_batch,
        soc_version=soc_version,
        ort_level=ort_level,
        tolerance=tolerance,
        inductor_configs=inductor_configs,
        rewrite=rewrite,
    )
    guard_output(out, "--out", reads=(onnx_path,))
    ensure_dir(out.parent, flag=f"--out {out}")
    return BUILDERS[(target, precision)](job)


# ---- shared steps ----


def _reference(job: CompileJob, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The source ONNX's first output in ONNX Runtime (CPU, default optimisations)."""
    with OnnxRuntimeRunner(job.onnx_path) as runner:
        return runner.infer(feed)[job.outputs[0].name]


def _validate(job: CompileJob, runner_cls: type, path: Path, batch: int, **kw: Any) -> float:
    """Run the artifact and the source ONNX on one seeded feed; max abs diff within tolerance."""
    return _accuracy(job, runner_cls, path, batch, **kw)[0]


def precision_limits(job: CompileJob) -> tuple[float | None, float]:
    """(mean, max) abs-diff bounds of `job`'s artifact vs its source: fp32 has only the max."""
    if job.precision == "fp32":
        return None, job.tolerance
    mean_bound, max_bound = PRECISION_LIMITS[job.precision]
    return mean_bound, max(max_bound, job.tolerance)


def _accuracy(
    job: CompileJob, runner_cls: type, path: Path, batch: int, **kw: Any
) -> tuple[float, float]:
    """(max, mean) abs diff of the artifact vs the source ONNX on one seeded feed, within the
    precision's bounds (`precision_limits`), else an error and nothing is written."""
    with runner_cls(path, device=job.device, **kw) as runner:
        feed = random_feed(runner.inputs, batch, num_classes=job.num_classes, seed=0)
        found = runner.infer(feed)[job.outputs[0].name]
    max_abs, mean_abs = diff_stats(found, _reference(job, feed))
    mean_bound, max_bound = precision_limits(job)
    if mean_bound is None and not max_abs <= max_bound:  # also catches NaN
        raise BigBiGANError(
            f"{job.out}: {job.target} output differs from {job.onnx_path} by max {max_abs:.3g} "
            f"> --tolerance {max_bound:g} (mean {mean_abs:.3g}); nothing written"
        )
    if mean_bound is not None and not (max_abs <= max_bound and mean_abs <= mean_bound):
        raise BigBiGANError(
            f"{job.out}: {job.target} {job.precision} output differs from {job.onnx_path} by "
            f"mean {mean_abs:.3g}, max {max_abs:.3g}: beyond the {job.precision} bounds "
            f"(mean {mean_bound:g}, max {max_bound:g}); nothing written"
        )
    return max_abs, mean_abs


def calibration_feeds(
    specs: list[TensorSpec],
    num_classes: int | None,
    samples: int = CALIBRATION_SAMPLES,
    batch: int = CALIBRATION_BATCH,
    seed: int = CALIBRATION_SEED,
) -> list[dict[str, np.ndarray]]:
    """int8 calibration inputs: `samples` draws of the offline interface's inputs in batches,
    noise from the training distribution (truncated normal, |z| <= 2) and uniform labels (a
    static leading dim wins over `batch`)."""
    feeds, drawn = [], 0
    while drawn < samples:
        feed = random_feed(
            specs, min(batch, samples - drawn), num_classes=num_classes, seed=seed + len(feeds)
        )
        feeds.append(feed)
        drawn += next(iter(feed.values())).shape[0]
    return feeds


def _meta(job: CompileJob, report: CompileReport, **extra: Any) -> dict[str, Any]:
    """The sidecar of a compiled artifact: provenance, interface, numbers."""
    src = job.source_meta
    return {
        "target": job.target,
        "precision": job.precision,
        "device": job.device,
        "source": str(job.onnx_path.resolve()),
        "checkpoint": str(job.checkpoint.resolve()) if job.checkpoint else src.get("checkpoint"),
        "role": src.get("role"),
        "model": src.get("model"),
        "seconds": round(report.seconds, 3),
        "max_abs_diff_vs_source": report.max_abs_diff,
        "note": report.note,
        **extra,
    }


@contextlib.contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """Yield `out`'s name inside a fresh temp dir beside it; if the block succeeds, move the
    staged sidecar (when written) and then the file into place. Tools that care about the file
    name (AOTInductor names the archive's root after it, ORT and atc go by suffix) see the real
    one, and a failure leaves nothing behind."""
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        staged = tmpdir / out.name
        yield staged
        if sidecar_path(staged).exists():
            os.replace(sidecar_path(staged), sidecar_path(out))
        os.replace(staged, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _rewrites_note(rewrites: dict[str, int]) -> str:
    return "".join(f"; {n}x {what}" for what, n in rewrites.items())


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ---- ort ----


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
    from bigbigan.runtimes.onnxruntime import graph_level, import_onnxruntime

    ort = import_onnxruntime()
    fmt = "ORT" if job.out.suffix.lower() == ".ort" else "ONNX"
    source = onnx.load(str(job.onnx_path))
    rewrites = rewrite_upsampling(source) if job.rewrite else {}
    with _staged(job.out) as staged:
        options = ort.SessionOptions()
        options.graph_optimization_level = graph_level(job.ort_level)
        options.optimized_model_filepath = str(staged)
        options.add_session_config_entry("session.save_model_format", fmt)
        options.log_severity_level = 3  # the hardware-specific warning goes into the note
        started = time.perf_counter()
        try:
            ort.InferenceSession(
                source.SerializeToString(), options, providers=providers_for(job.device)
            )
        except Exception as e:
            raise BigBiGANError(
                f"{job.onnx_path}: ONNX Runtime cannot optimise it: {_first_line(e)}"
            ) from None
        seconds = time.perf_counter() - started
        if not staged.is_file() or not staged.stat().st_size:
            raise BigBiGANError(f"{job.out}: ONNX Runtime wrote nothing")
        max_abs = _validate(job, OnnxRuntimeRunner, staged, batch=job.batch or 4)
        note = f"ONNX Runtime {ort.__version__}, level {job.ort_level}, {fmt} format"
        note += _rewrites_note(rewrites)
        if job.ort_level == "all":
            note += "; holds layout optimisations specific to this CPU: run it where it was made"
        report = CompileReport("ort", job.precision, job.out, seconds, None, note, max_abs)
        report.sidecar = sidecar_path(job.out)
        meta = _meta(job, report, level=job.ort_level, file_format=fmt, rewrites=dict(rewrites))
        meta["inputs"], meta["outputs"] = specs_to_json(job.inputs), specs_to_json(job.outputs)
        write_document(sidecar_path(staged), SIDECAR_FORMAT, meta)
    return report


@builder("ort", "int8")
def _build_ort_int8(job: CompileJob) -> CompileReport:
    """Static post-training quantisation for ONNX Runtime's CPU kernels: QDQ format, weights int8
    per output channel, activations uint8 (the pairing ORT recommends on x86), ranges calibrated
    (min/max) on CALIBRATION_SAMPLES generator inputs from the training noise distribution. The
    result is an ordinary, portable `.onnx` that ONNX Runtime fuses into int8 kernels at load.
    """
    from bigbigan.runtimes.onnxruntime import import_onnxruntime

    ort = import_onnxruntime()
    if job.device != "cpu":
        raise BigBiGANError(f"--device {job.device}: int8 for target ort is CPU-only")
    if job.out.suffix.lower() != ".onnx":
        raise BigBiGANError(f"--out {job.out}: int8 for target ort writes an .onnx file")
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise BigBiGANError(f"onnxruntime.quantization is unavailable: {e}") from None

    feeds = calibration_feeds(job.inputs, job.num_classes)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with _staged(job.out) as staged:
        pre = staged.with_name("pre.onnx")
        started = time.perf_counter()
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # per-channel notes on rank-1 weights (scales, biases)
        try:
            with quiet_exporter():
                # Fold and clean the graph first (ONNX shape inference; the symbolic pass
                # cannot follow the exporter's batch dim and is not needed here).
                quant_pre_process(str(job.onnx_path), str(pre), skip_symbolic_shape=True)
                quantize_static(
                    str(pre),
                    str(staged),
                    Reader(),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                )
        except Exception as e:  # the quantiser raises many types
            msg = f"{job.out}: ONNX Runtime quantisation failed: {_first_line(e)}"
            raise BigBiGANError(msg) from None
        finally:
            root.setLevel(level)
        seconds = time.perf_counter() - started
        pre.unlink(missing_ok=True)
        max_abs, mean_abs = _accuracy(job, OnnxRuntimeRunner, staged, REDUCED_VALIDATE_BATCH)
        note = (
            f"ONNX Runtime {ort.__version__} static int8 (QDQ, per-channel, U8S8, min/max "
            f"calibration on {CALIBRATION_SAMPLES} samples)"
        )
        report = CompileReport("ort", job.precision, job.out, seconds, None, note, max_abs)
        report.mean_abs_diff = mean_abs
        report.sidecar = sidecar_path(job.out)
        meta = _meta(job, report, file_format="ONNX", **_reduced_meta(job, report))
        meta["inputs"], meta["outputs"] = specs_to_json(job.inputs), specs_to_json(job.outputs)
        write_document(sidecar_path(staged), SIDECAR_FORMAT, meta)
    return report


def _reduced_meta(job: CompileJob, report: CompileReport) -> dict[str, Any]:
    """Sidecar fields of a reduced-precision artifact: its accuracy cost and how it was made."""
    mean_bound, max_bound = precision_limits(job)
    meta: dict[str, Any] = {
        "accuracy": {
            "reference": "the fp32 source ONNX in ONNX Runtime",
            "batch": REDUCED_VALIDATE_BATCH,
            "seed": 0,
            "mean_abs_diff": report.mean_abs_diff,
            "max_abs_diff": report.max_abs_diff,
            "bounds": {"mean": mean_bound, "max": max_bound},
        }
    }
    if job.precision == "int8":
        meta["calibration"] = {
            "samples": CALIBRATION_SAMPLES,
            "batch": CALIBRATION_BATCH,
            "seed": CALIBRATION_SEED,
            "inputs": "truncated normal noise (|z| <= 2), uniform labels",
        }
    return meta


# ---- aoti ----


def _checkpoint_for(job: CompileJob) -> Path:
    """`--checkpoint`, else the checkpoint named in the ONNX's sidecar."""
    if job.checkpoint is not None:
        return job.checkpoint
    recorded = job.source_meta.get("checkpoint")
    if not recorded:
        raise BigBiGANError(
            f"{job.onnx_path}: no sidecar {job.onnx_path.name}.json naming the checkpoint it was "
            "exported from; pass --checkpoint"
        )
    return Path(recorded)


def cast_module(module: Any, dtype: Any) -> Any:
    """`module` with its weights in `dtype` (bf16, fp16) behind the fp32 offline interface:
    float inputs are cast down, labels pass through, the output comes back as float32."""
    import torch

    class Cast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module.to(dtype)

        def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            args = [t.to(dtype) if t.is_floating_point() else t for t in (a, b) if t is not None]
            return self.module(*args).float()

    return Cast().eval()


def autocast_module(module: Any, dtype: Any) -> Any:
    """`module` run under CPU autocast to `dtype`, output cast back to float32: the quantised
    model's unquantised operations then run in `dtype` too."""
    import torch

    class Autocast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module

        def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            args = [t for t in (a, b) if t is not None]
            with torch.autocast("cpu", dtype=dtype):
                out = self.module(*args)
            return out.float()

    return Autocast()  # no .eval(): an exported (quantised) module refuses mode changes


def _import_pt2e() -> tuple[Any, Any, Any]:
    """torchao's PT2E quantisation (prepare, convert, x86 quantizer module), or a clear error."""
    logging.getLogger("torchao").setLevel(logging.ERROR)  # optional CUDA kernels it cannot load
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # its enum registration
    try:
        with quiet_exporter():
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        raise BigBiGANError(
            "int8 for target aoti needs torchao (PT2E quantisation): pip install torchao, "
            "or pip install 'bigbigan[perf]'"
        ) from None
    return prepare_pt2e, convert_pt2e, xiq


def quantize_pt2e(module: Any, args: tuple, dynamic_shapes: Any, feeds: list[tuple]) -> Any:
    """Static int8 quantisation of `module` for Inductor's x86 backend (oneDNN int8 kernels,
    AMX or VNNI where the CPU has them): export, insert observers (activations per tensor,
    weights per channel, X86InductorQuantizer's defaults), calibrate on `feeds`, convert.
    Returns the quantised module (a GraphModule with quantize/dequantize ops)."""
    import torch

    prepare_pt2e, convert_pt2e, xiq = _import_pt2e()
    graph = torch.export.export(module, args, dynamic_shapes=dynamic_shapes).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for feed in feeds:
            prepared(*feed)
    return convert_pt2e(prepared)


@builder("aoti", "fp32")
def _build_aoti(job: CompileJob) -> CompileReport:
    """torch.export the checkpoint's offline module (dynamic batch 1..max_batch when the ONNX
    has one) and compile it with AOTInductor into a `.pt2` package.

    Inductor's `freezing` is left off: on this model the AOTInductor CPU code it generates is
    byte-for-byte the same with and without it (weights are already constants in AOT mode).
    """
    return _build_aoti_package(job)


@builder("aoti", "bf16")
def _build_aoti_bf16(job: CompileJob) -> CompileReport:
    """bf16 weights and activations behind the fp32 interface (inputs cast down, images cast
    up); on the CPU oneDNN runs the convolutions on AMX or AVX-512 BF16 where present."""
    import torch

    return _build_aoti_package(job, lambda m: cast_module(m, torch.bfloat16))


@builder("aoti", "fp16")
def _build_aoti_fp16(job: CompileJob) -> CompileReport:
    """fp16 weights and activations behind the fp32 interface: for CUDA GPUs (tensor cores)."""
    import torch

    if not job.device.startswith("cuda"):
        raise BigBiGANError(
            f"--device {job.device}: fp16 for target aoti is for CUDA GPUs; on the CPU use "
            "--precision bf16 (or int8)"
        )
    return _build_aoti_package(job, lambda m: cast_module(m, torch.float16))


@builder("aoti", "int8")
def _build_aoti_int8(job: CompileJob) -> CompileReport:
    """Static int8 (PT2E, X86InductorQuantizer) calibrated on CALIBRATION_SAMPLES generator
    inputs, then AOTInductor with freezing, which lowers the quantised convolutions to oneDNN
    int8 kernels. Where oneDNN has bf16 on this CPU, what stays unquantised (batch norms,
    attention, element-wise ops) runs in bf16 ("int8-mixed-bf16"): measured ~1.2-1.4x faster at
    batch 256 than with fp32 in between, same accuracy. CPU only; needs torchao."""
    if job.device != "cpu":
        raise BigBiGANError(
            f"--device {job.device}: int8 for target aoti is CPU-only (x86 oneDNN kernels); "
            "on a GPU use --precision bf16 or fp16"
        )
    import torch

    _import_pt2e()  # fail before the slow steps when torchao is missing
    mixed = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return _build_aoti_package(job, quantize=True, autocast_bf16=mixed)


def _build_aoti_package(
    job: CompileJob,
    wrap: Callable[[Any], Any] | None = None,
    quantize: bool = False,
    autocast_bf16: bool = False,
) -> CompileReport:
    """The aoti builders' common path: rebuild the offline module from the checkpoint, check its
    interface against the ONNX, optionally `wrap` it (precision casts) or `quantize` it, export,
    compile with the precision's Inductor options, validate against the source ONNX."""
    import torch
    import torch._inductor

    from bigbigan.model.networks import offline_module
    from bigbigan.model.rewrite import fold_upsampling
    from bigbigan.runtimes.aoti import SIDECAR_FORMAT as AOTI_FORMAT
    from bigbigan.runtimes.aoti import AOTIRunner
    from bigbigan.runtimes.base import require_cuda
    from bigbigan.runtimes.torch import offline_specs
    from bigbigan.training.checkpoint import load_model

    require_cuda(job.device, "an aoti package for cuda")
    ckpt_path = _checkpoint_for(job)
    model, ckpt = load_model(ckpt_path)
    encoder = [spec.name for spec in job.inputs] == [ENCODER_INPUT]
    specs, out_specs = offline_specs(ckpt.model, encoder)

    def rest(items: list[TensorSpec]) -> list[tuple]:
        return [(s.name, s.dtype, s.shape[1:]) for s in items]

    if rest(specs) != rest(job.inputs) or rest(out_specs) != rest(job.outputs):
        raise BigBiGANError(
            f"--checkpoint {ckpt_path}: its {'encoder' if encoder else 'generator'} interface "
            f"{specs} does not match {job.onnx_path} {job.inputs}"
        )
    specs, out_specs = job.inputs, job.outputs  # keep the ONNX's static or dynamic batch
    module = offline_module(model, encoder=encoder).eval().to(job.device)
    configs = AOTI_CONFIGS[job.precision] if job.inductor_configs is None else job.inductor_configs
    # fp32 only: in bf16 the transposed convolution moved pixels 4x further from the source
    # (mean 5.5e-3 vs 1.3e-3, ch=64), past the bf16 bound; int8 keeps the graph it calibrates on.
    # Not with freezing: a frozen package of the folded blocks differed from the source by max
    # 2e-3 (ch=8; unfrozen, and torch.compile with freezing, 2e-7); the cause was not found.
    fold = job.rewrite and job.precision == "fp32" and not configs.get("freezing")
    rewrites = fold_upsampling(module) if fold else {}
    if wrap is not None:
        module = wrap(module)
    example = random_feed(specs, 2, num_classes=ckpt.model.num_classes, seed=1)
    args = tuple(torch.from_numpy(example[spec.name]).to(job.device) for spec in specs)
    dynamic_shapes = None
    if job.dynamic:
        batch = torch.export.Dim("batch", min=1, max=job.max_batch)
        dynamic_shapes = [{0: batch} for _ in specs]  # positional: wrappers rename the inputs
    with _staged(job.out) as staged:
        started = time.perf_counter()
        try:
            with quiet_exporter():
                if quantize:
                    feeds = [
                        tuple(torch.from_numpy(f[spec.name]) for spec in specs)
                        for f in calibration_feeds(specs, ckpt.model.num_classes)
                    ]
                    module = quantize_pt2e(module, args, dynamic_shapes, feeds)
                if autocast_bf16:
                    module = autocast_module(module, torch.bfloat16)
                with torch.no_grad():
                    program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
                    torch._inductor.aoti_compile_and_package(
                        program, package_path=str(staged), inductor_configs=dict(configs)
                    )
            trust.record(staged)  # a package compiled here may be loaded (runtimes/trust.py)
        except BigBiGANError:
            raise
        except Exception as e:  # inductor and the C++ toolchain raise many types
            msg = f"{job.out}: AOTInductor compilation failed: {_first_line(e)}"
            raise BigBiGANError(msg) from None
        seconds = time.perf_counter() - started
        report = CompileReport("aoti", job.precision, job.out, seconds)
        report.note = f"torch {torch.__version__} AOTInductor, {job.device}"
        if job.precision != "fp32":
            report.note += f", {job.precision}"
        if autocast_bf16:
            report.note += " (bf16 between int8 ops)"
        if job.dynamic:
            report.note += f", batch 1..{job.max_batch}"
        report.note += _rewrites_note(rewrites)
        report.sidecar = sidecar_path(job.out)
        meta = _meta(job, report, rewrites=dict(rewrites))
        meta.update(
            checkpoint=str(ckpt.directory.resolve()),
            step=ckpt.step,
            inputs=specs_to_json(specs),
            outputs=specs_to_json(out_specs),
            inductor_configs=dict(configs),
        )
        if autocast_bf16:
            meta["between_int8_ops"] = "bf16 (autocast)"
        write_document(sidecar_path(staged), AOTI_FORMAT, meta)  # the runner reads names from it
        reduced = job.precision != "fp32"
        batch = job.batch or (REDUCED_VALIDATE_BATCH if reduced else 4)
        report.max_abs_diff, mean_abs = _accuracy(job, AOTIRunner, staged, batch=batch)
        meta["max_abs_diff_vs_source"] = report.max_abs_diff
        if reduced:
            report.mean_abs_diff = mean_abs
            meta.update(_reduced_meta(job, report))
        write_document(sidecar_path(staged), AOTI_FORMAT, meta)
    return report


# ---- tensorrt ----


@builder("tensorrt", "fp32")
def _build_tensorrt(job: CompileJob) -> CompileReport:
    """Parse the ONNX with TensorRT's ONNX parser and build a serialized engine for this GPU.

    fp32 means fp32: TF32 is switched off. A dynamic batch gets one optimisation profile
    (1, `batch` or 256, `max_batch`).
    """
    from bigbigan.runtimes.tensorrt import TensorRTRunner, import_tensorrt

    trt = import_tensorrt()
    if not job.device.startswith("cuda"):
        raise BigBiGANError(
            f"--device {job.device}: TensorRT builds engines for a CUDA GPU; pass --device cuda"
        )
    from bigbigan.runtimes.base import cuda_index, require_cuda

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
    with _staged(job.out) as staged:
        staged.write_bytes(bytes(serialized))
        report = CompileReport("tensorrt", job.precision, job.out, seconds)
        report.note = f"TensorRT {trt.__version__}, {torch.cuda.get_device_name()}, TF32 off"
        report.max_abs_diff = _validate(job, TensorRTRunner, staged, batch=job.batch or 4)
        report.sidecar = sidecar_path(job.out)
        meta = _meta(job, report, inputs=specs_to_json(job.inputs))
        meta["outputs"] = specs_to_json(job.outputs)
        write_document(sidecar_path(staged), SIDECAR_FORMAT, meta)
    return report


# ---- ascend ----


def static_onnx(model: Any, batch: int) -> Any:
    """A copy of an onnx.ModelProto with every input's and output's symbolic leading dim fixed
    to `batch`; intermediate shapes are inferred again (strict) from the new inputs."""
    import onnx

    static = onnx.ModelProto()
    static.CopyFrom(model)
    for value in [*static.graph.input, *static.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = batch
    del static.graph.value_info[:]  # stale symbolic shapes; re-derived below
    try:
        return onnx.shape_inference.infer_shapes(static, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as e:
        raise BigBiGANError(f"fixing the batch to {batch} breaks shape inference: {e}") from None


def atc_command(
    static_path: Path, output: Path, inputs: list[TensorSpec], soc_version: str
) -> list[str]:
    """The ATC (Ascend Tensor Compiler) argv for a static ONNX model (framework 5 = ONNX)."""
    shapes = ";".join(f"{s.name}:{','.join(str(d) for d in s.shape)}" for s in inputs)
    return [
        "atc",
        "--framework=5",
        f"--model={static_path}",
        f"--output={output}",
        "--input_format=ND",
        f"--input_shape={shapes}",
        f"--soc_version={soc_version}",
    ]


def format_command(argv: list[str]) -> str:
    """argv as one shell line; `--input_shape` is double-quoted as in the original scripts."""
    parts = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key == "--input_shape":
            parts.append(f'{key}="{value}"')
        elif sep:
            parts.append(f"{key}={shlex.quote(value)}")
        else:
            parts.append(shlex.quote(arg))
    return " ".join(parts)


@builder("ascend", "fp32")
def _build_ascend(job: CompileJob) -> CompileReport:
    """Write a static-batch ONNX (`G.static.onnx` beside `--out G.om`), checked and run against
    the source in ONNX Runtime, and the `atc` line that compiles it to `G.om`; run that line
    when `atc` is on PATH. The ONNX's own static batch, `--batch`, or 256 sets the batch."""
    import onnx

    out = job.out if job.out.suffix.lower() == ".om" else job.out.with_name(job.out.name + ".om")
    base = out.with_suffix("")  # atc appends .om itself
    static_batch = {s.shape[0] for s in job.inputs if s.shape and s.shape[0] is not None}
    if static_batch and job.batch is not None and static_batch != {job.batch}:
        raise BigBiGANError(
            f"--batch {job.batch}: {job.onnx_path} has static batch {static_batch.pop()}"
        )
    batch = job.batch or (static_batch.pop() if static_batch else DEFAULT_ASCEND_BATCH)
    static_path = base.with_name(base.name + ".static.onnx")
    if static_path.resolve() == job.onnx_path.resolve():
        static_path = base.with_name(f"{base.name}.b{batch}.static.onnx")
    started = time.perf_counter()
    model = static_onnx(onnx.load(str(job.onnx_path)), batch)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        msg = f"{static_path}: the ONNX checker rejects it: {_first_line(e)}"
        raise BigBiGANError(msg) from None
    inputs, outputs = onnx_specs(model)
    with _staged(static_path) as staged:
        onnx.save_model(model, str(staged))
        seconds = time.perf_counter() - started
        max_abs = _validate(job, OnnxRuntimeRunner, staged, batch=batch)
        argv = atc_command(static_path, base, inputs, job.soc_version)
        report = CompileReport("ascend", job.precision, static_path, seconds, format_command(argv))
        report.max_abs_diff = max_abs
        report.sidecar = sidecar_path(static_path)
        meta = _meta(job, report, static_batch=batch, command=report.command)
        meta["inputs"], meta["outputs"] = specs_to_json(inputs), specs_to_json(outputs)
        write_document(sidecar_path(staged), SIDECAR_FORMAT, meta)
    if shutil.which("atc") is None:
        report.note = (
            f"static ONNX, batch {batch}; atc is not on PATH, so {out.name} was not built: "
            "run the command on a machine with the Ascend CANN toolkit"
        )
        return report
    with _staged(out) as staged_om:
        run_argv = atc_command(static_path, staged_om.with_suffix(""), inputs, job.soc_version)
        started = time.perf_counter()
        result = subprocess.run(run_argv, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not staged_om.exists():
            lines = (result.stderr or result.stdout or "").strip().splitlines()
            raise BigBiGANError(
                f"atc failed (exit {result.returncode}) building {out}: "
                f"{lines[-1] if lines else 'no output'}"
            )
        report.seconds += time.perf_counter() - started
    report.path = out
    report.note = f"static batch {batch}; atc built {out.name} ({job.soc_version})"
    return report
