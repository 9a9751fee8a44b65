"""Compile an exported ONNX model for the hardware it will run on.

The targets and their precisions come from the registry (runtimes/registry.py); each backend's
builders live in its runtime module: `ort` (ONNX Runtime `.onnx`/`.ort`, fp32 and int8), `aoti`
(AOTInductor `.pt2` rebuilt from the checkpoint: fp32, bf16, fp16 on CUDA, int8 on the CPU),
`tensorrt` (`.engine` where TensorRT is installed), `openvino` (IR `.xml` + `.bin`, fp32 and a
bf16 hint) and `ascend` (a static-shape ONNX plus the `atc` command line, run when `atc` is on
PATH). fp32 `ort`, `aoti` and `openvino` builds rewrite the generator's upsampling into
transposed convolutions first (model/rewrite.py: exact, 2.25x fewer multiply-adds in those
layers; `rewrite=False` / `--no-rewrite` keeps the export's graph). `--target auto` /
`--precision auto` builds the CPU candidates, times them here and keeps the fastest within an
accuracy bound (bigbigan.autotune).

This module checks the request against the registry and the source ONNX, then hands a
`CompileJob` to the builder. Every builder validates its artifact against the source ONNX in
ONNX Runtime before it is renamed into place, reduced precision within PRECISION_LIMITS, and
writes a JSON sidecar saying where it came from and what it cost (runtimes/build.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir, guard_output
from bigbigan.importers import is_frozen_graph, resolve_model
from bigbigan.interface import MAX_BATCH, onnx_specs
from bigbigan.interface import read_model_sidecar as read_sidecar
from bigbigan.runtimes import registry
from bigbigan.runtimes.build import PRECISION_LIMITS, CompileJob, CompileReport
from bigbigan.runtimes.onnxruntime import check_model_file

PRECISIONS = registry.PRECISIONS

__all__ = ["PRECISIONS", "PRECISION_LIMITS", "CompileJob", "CompileReport", "compile_model"]


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
    max_mean_diff: float | None = None,
) -> CompileReport:
    """Compile `onnx_path` for `target` into `out`; see the module docstring.

    `checkpoint` (aoti only) defaults to the one recorded in the ONNX's sidecar. `batch` is the
    static batch for ascend (default: the ONNX's own static batch, else 256) and the optimum
    batch of a TensorRT profile; `max_batch` bounds the dynamic batch of aoti and TensorRT.
    `ort_level` is the ONNX Runtime optimisation level ("basic", "extended", "all"). Outputs
    that differ from the source ONNX by more than `tolerance` (max abs) are not written; reduced
    precision has its own bounds (PRECISION_LIMITS). `inductor_configs` (aoti) replaces the
    precision's default Inductor options (runtimes/aoti.py AOTI_CONFIGS), e.g.
    `{"freezing": False}`. `rewrite=False` (fp32 ort, aoti, openvino) skips the upsampling
    rewrites (bigbigan.model.rewrite). `target="auto"` or `precision="auto"` builds every
    candidate, times them here and keeps the fastest within `max_mean_diff`
    (bigbigan.autotune); `batch` is then the timed batch.
    """
    onnx_path, out = Path(onnx_path), Path(out)
    if "auto" in (target, precision):
        return _compile_auto(
            onnx_path, target, out, precision, device, checkpoint, batch, max_mean_diff,
            max_batch=max_batch, ort_level=ort_level, tolerance=tolerance, rewrite=rewrite,
        )  # fmt: skip
    spec = _check_request(target, precision, out, device, batch, max_batch)
    onnx_path = _source_onnx(onnx_path)
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
        max_batch=max_batch,
        source_meta=read_sidecar(onnx_path) or {},
        batch=batch,
        soc_version=soc_version,
        ort_level=ort_level,
        tolerance=tolerance,
        inductor_configs=inductor_configs,
        rewrite=rewrite,
    )
    guard_output(out, "--out", reads=(onnx_path,))
    ensure_dir(out.parent, flag=f"--out {out}")
    return spec.builders[precision](job)


def _check_request(
    target: str, precision: str, out: Path, device: str, batch: int | None, max_batch: int
) -> registry.Target:
    """The registered target, once the request is known to be one it can build: one line
    naming the flag otherwise, before any slow step."""
    spec = registry.target(target)
    if precision not in spec.builders:
        if precision not in PRECISIONS:
            raise BigBiGANError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
        raise BigBiGANError(
            f"precision {precision} for target {target} is not supported yet "
            f"(supported: {', '.join(spec.builders)})"
        )
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise BigBiGANError(f"--device {device}: expected cpu, cuda or cuda:N")
    for flag, value in (("--batch", batch), ("--max-batch", max_batch)):
        if value is not None and value < 1:
            raise BigBiGANError(f"{flag} {value}: expected a positive integer")
    if spec.suffixes and out.suffix.lower() not in spec.suffixes:
        raise BigBiGANError(
            f"--out {out}: target {target} writes {' or '.join(spec.suffixes)} files"
        )
    return spec


def _source_onnx(path: Path) -> Path:
    """The ONNX model a compile starts from: `path`, or a TensorFlow .pb's cached ONNX import;
    checked to be an ONNX file."""
    if is_frozen_graph(path):
        path = resolve_model(path)  # a TensorFlow .pb: its cached ONNX import
    if path.suffix.lower() != ".onnx":
        raise BigBiGANError(
            f"{path}: expected an .onnx model (from `bigbigan export`) or a TensorFlow .pb"
        )
    check_model_file(path)
    return path


def _compile_auto(
    onnx_path: Path,
    target: str,
    out: Path,
    precision: str,
    device: str,
    checkpoint: str | Path | None,
    batch: int | None,
    max_mean_diff: float | None,
    **options: Any,
) -> CompileReport:
    """`compile_model` with "auto" for the target or precision: bigbigan.autotune."""
    import onnx

    from bigbigan.autotune import DEFAULT_BATCH, DEFAULT_MAX_MEAN_DIFF, compile_auto

    targets = registry.targets()
    if target not in ("auto", *targets):
        raise BigBiGANError(f"--target {target}: expected auto or one of {', '.join(targets)}")
    if precision not in ("auto", *PRECISIONS):
        raise BigBiGANError(
            f"--precision {precision}: expected auto or one of {', '.join(PRECISIONS)}"
        )
    onnx_path = _source_onnx(onnx_path)
    inputs, outputs = onnx_specs(onnx.load(str(onnx_path)))
    model = (read_sidecar(onnx_path) or {}).get("model")
    ensure_dir(out.parent, flag=f"--out {out}")
    return compile_auto(
        compile_model,
        onnx_path,
        out,
        target=target,
        precision=precision,
        inputs=inputs,
        output=outputs[0].name,
        num_classes=model.get("num_classes") if isinstance(model, dict) else None,
        max_mean_diff=DEFAULT_MAX_MEAN_DIFF if max_mean_diff is None else max_mean_diff,
        batch=batch or DEFAULT_BATCH,
        device=device,
        checkpoint=checkpoint,
        **options,
    )
