"""AOTInductor: a `.pt2` package compiled ahead of time by `bigbigan compile --target aoti`.

The package holds a shared library but no tensor names, so compile writes `X.pt2.json` beside
it: input/output specs, the device it was compiled for, and where it came from.

The builders rebuild the offline module from the checkpoint the ONNX came from (fp32 with the
exact upsampling fold, model/rewrite.py), torch.export it and compile it with AOTInductor:
fp32, bf16 (CPU and CUDA), fp16 (CUDA) and int8 (CPU, PT2E quantisation through torchao).
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.cpu import has_vnni
from bigbigan.documents import sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.interface import (
    TensorSpec,
    quiet_exporter,
    random_feed,
    read_model_sidecar,
    specs_to_json,
)
from bigbigan.pt2e import feed_tensors, import_pt2e, quantise_aoti
from bigbigan.quantize import PROBE_BATCH, PROBE_SEED, Int8Plan, speed_note, speed_vs_fp32
from bigbigan.runtimes.base import Runner, StagedCall, cuda_index, require_cuda
from bigbigan.runtimes.build import (
    CALIBRATION_SAMPLES,
    REDUCED_VALIDATE_BATCH,
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
from bigbigan.runtimes.torch import (
    autocast_module,
    cast_module,
    checked_offline_module,
    staged_torch_call,
)
from bigbigan.runtimes.trust import record as trust_record
from bigbigan.runtimes.trust import require_trusted

SIDECAR_FORMAT = "bigbigan-aoti"
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


def read_sidecar(path: Path) -> dict[str, Any]:
    """The package's sidecar, with `inputs`/`outputs` parsed into TensorSpecs."""
    meta = read_model_sidecar(
        path,
        SIDECAR_FORMAT,
        missing="it holds the input/output names; compile packages with "
        "`bigbigan compile --target aoti`",
    )
    assert meta is not None  # `missing` makes a missing sidecar an error
    return meta


@register_runner
class AOTIRunner(Runner):
    """A `.pt2` AOTInductor package, loaded with `torch._inductor.aoti_load_package`.

    A package runs only on the kind of device it was compiled for (its sidecar says which).
    `threads` sets torch's intra-op (OpenMP) thread count, which is process-wide.
    """

    name = "aoti"
    suffixes = (".pt2",)
    concurrent = False  # two threads' calls run one at a time (measured)

    def __init__(
        self, path: str | Path, *, device: str = "cpu", threads: int | None = None
    ) -> None:
        super().__init__(path, device=device, threads=threads)
        self._model = None

    @classmethod
    def version(cls) -> str:
        import torch

        return torch.__version__

    @classmethod
    def check_file(cls, path: Path) -> None:
        if not path.is_file():
            raise BigBiGANError(f"{path}: no such file")
        if not zipfile.is_zipfile(path):
            raise BigBiGANError(f"{path}: not an AOTInductor package (not a zip archive)")
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise BigBiGANError(f"{path}: unreadable zip archive ({e})") from e
        if not any("/data/aotinductor/" in name for name in names):
            raise BigBiGANError(f"{path}: a zip archive, but not an AOTInductor package")
        read_sidecar(path)
        require_trusted(path)  # loading runs its code: only packages compiled here (trust.py)

    def _load_impl(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        import torch
        import torch._inductor

        require_trusted(self.path)  # before torch opens it, whoever built this runner
        meta = read_sidecar(self.path)
        compiled_for = str(meta.get("device", "cpu"))
        if compiled_for.split(":")[0] != self.device.split(":")[0]:
            raise BigBiGANError(
                f"{self.path}: compiled for {compiled_for}, cannot run on --device {self.device}; "
                f"compile again with --device {self.device}"
            )
        require_cuda(self.device, "the aoti backend")
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        index = cuda_index(self.device) if self.device.startswith("cuda") else -1
        try:
            self._model = torch._inductor.aoti_load_package(str(self.path), device_index=index)
        except Exception as e:  # the loader raises RuntimeError and friends from C++
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BigBiGANError(f"{self.path}: AOTInductor cannot load it: {first}") from e
        return meta["inputs"], meta["outputs"]

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(feed[spec.name]).to(self.device) for spec in self.inputs]
        with torch.inference_mode():
            out = self._model(*args)
        values = list(out) if isinstance(out, list | tuple) else [out]
        if len(values) != len(self.outputs):
            raise BigBiGANError(
                f"{self.path}: returned {len(values)} outputs, its sidecar lists "
                f"{len(self.outputs)}"
            )
        return {
            spec.name: value.cpu().numpy() for spec, value in zip(self.outputs, values, strict=True)
        }

    def _staged_impl(self) -> StagedCall | None:
        return staged_torch_call(self, self._model)

    def _close_impl(self) -> None:
        self._model = None


# ---- compile target `aoti` ----

register_target("aoti", suffixes=(".pt2",), artifact="G.pt2")


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

    import_pt2e()  # fail before the slow steps when torchao is missing
    mixed = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return _build_aoti_package(job, quantize=True, autocast_bf16=mixed)


def _build_aoti_package(
    job: CompileJob,
    wrap: Callable[[Any], Any] | None = None,
    quantize: bool = False,
    autocast_bf16: bool = False,
) -> CompileReport:
    """The aoti builders' common path: the offline module (`checked_offline_module`), optionally
    `wrap`ped (precision casts) or `quantize`d, exported with the ONNX's static or dynamic
    batch, compiled with the precision's Inductor options, validated against the source ONNX."""
    import torch
    import torch._inductor

    from bigbigan.model.rewrite import fold_upsampling

    module, ckpt = checked_offline_module(job)
    specs = job.inputs  # keep the ONNX's static or dynamic batch
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
    args = feed_tensors(specs, example)
    dynamic_shapes = None
    if job.dynamic:
        batch = torch.export.Dim("batch", min=1, max=job.max_batch)
        dynamic_shapes = [{0: batch} for _ in specs]  # positional: wrappers rename the inputs
    probe = random_feed(specs, PROBE_BATCH, num_classes=ckpt.model.num_classes, seed=PROBE_SEED)
    with staged(job.out) as path:
        started = time.perf_counter()
        plan = None
        try:
            with quiet_exporter():
                if quantize:
                    classes = ckpt.model.num_classes
                    module, plan = quantise_aoti(job, module, args, dynamic_shapes, probe, classes)
                if autocast_bf16:
                    module = autocast_module(module, torch.bfloat16)
                with torch.no_grad():
                    program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
                    torch._inductor.aoti_compile_and_package(
                        program, package_path=str(path), inductor_configs=dict(configs)
                    )
            trust_record(path)  # a package compiled here may be loaded (runtimes/trust.py)
        except BigBiGANError:
            raise
        except Exception as e:  # inductor and the C++ toolchain raise many types
            msg = f"{job.out}: AOTInductor compilation failed: {first_line(e)}"
            raise BigBiGANError(msg) from e
        seconds = time.perf_counter() - started
        report, meta = _package_report(job, seconds, ckpt, configs, rewrites, autocast_bf16, plan)
        write_sidecar(path, meta, SIDECAR_FORMAT)  # the runner reads names from it
        batch = job.batch or (REDUCED_VALIDATE_BATCH if job.reduced else 4)
        report.max_abs_diff, mean_abs = accuracy(job, AOTIRunner, path, batch=batch)
        meta["max_abs_diff_vs_source"] = report.max_abs_diff
        if job.reduced:
            report.mean_abs_diff = mean_abs
            meta.update(reduced_meta(job, report))
        if plan is not None:
            meta["speed_vs_fp32"] = speed_vs_fp32(job.onnx_path, path, probe)
            report.note += speed_note(meta["speed_vs_fp32"])
            meta["note"] = report.note
        write_sidecar(path, meta, SIDECAR_FORMAT)
    return report


def _package_report(
    job: CompileJob,
    seconds: float,
    ckpt: Any,
    configs: dict[str, Any],
    rewrites: dict[str, int],
    autocast_bf16: bool,
    plan: Int8Plan | None,
) -> tuple[CompileReport, dict[str, Any]]:
    """An aoti package's report (before validation) and its sidecar, which holds the interface
    the runner reads (a package has no tensor names) and how it was built."""
    import torch

    report = CompileReport("aoti", job.precision, job.out, seconds)
    report.note = f"torch {torch.__version__} AOTInductor, {job.device}"
    if job.reduced:
        report.note += f", {job.precision}"
    if autocast_bf16:
        report.note += " (bf16 between int8 ops)"
    if plan is not None:
        kept = ", ".join(plan.kept_fp32) or "none"
        report.note += (
            f" ({'8' if has_vnni() else '7'}-bit weights, {plan.calibration} calibration on "
            f"{CALIBRATION_SAMPLES} samples; {len(plan.quantised)} convolutions int8, kept in "
            f"fp32: {kept})"
        )
    if job.dynamic:
        report.note += f", batch 1..{job.max_batch}"
    report.note += rewrites_note(rewrites)
    report.sidecar = sidecar_path(job.out)
    meta = compiled_meta(job, report, rewrites=dict(rewrites))
    meta.update(
        checkpoint=str(ckpt.directory.resolve()),
        step=ckpt.step,
        inputs=specs_to_json(job.inputs),
        outputs=specs_to_json(job.outputs),
        inductor_configs=dict(configs),
    )
    if autocast_bf16:
        meta["between_int8_ops"] = "bf16 (autocast)"
    if plan is not None:
        meta["quantisation"] = plan.meta({})
    return report, meta


# ---- bench rows ----


@bench_rows("aoti")
def _aoti_rows(settings: BenchSettings) -> list[BenchRow]:
    """aoti packages for this device: fp32, bf16, and int8 (CPU) or fp16 (CUDA); on the CPU
    each also in slices of `micro_batch` for the batches larger than one slice."""
    device = "cuda" if settings.cuda else "cpu"
    rows = []
    for precision in ("fp32", "bf16", "fp16" if settings.cuda else "int8"):
        if precision not in settings.precisions:
            continue
        row = BenchRow("aoti", precision, model="aoti", artifact=f"G.{precision}.{device}.pt2")
        rows.append(row)
        if settings.micro_batch and not settings.cuda:
            size = settings.micro_batch
            sliced = replace(
                row,
                variant=f"micro-batch {size}",
                options={"micro_batch": size},
                min_batch=size + 1,
                note=f"large batches run in slices of {size} (infer --micro-batch)",
            )
            rows.append(sliced)
    return rows
