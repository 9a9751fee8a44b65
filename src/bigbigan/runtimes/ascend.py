"""Ascend NPUs: `bigbigan compile --target ascend` writes a static-batch ONNX and the `atc`
(Ascend Tensor Compiler) command line that turns it into an `.om` for the NPU, and runs that line
when `atc` is on PATH. No runner: an `.om` runs on the NPU (msame), not here; `pipeline` notes
the command instead of running it.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bigbigan.documents import sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec, onnx_specs, specs_to_json
from bigbigan.runtimes.build import (
    CompileJob,
    CompileReport,
    compiled_meta,
    first_line,
    staged,
    validate,
    write_sidecar,
)
from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner
from bigbigan.runtimes.registry import builder, register_target

DEFAULT_ASCEND_BATCH = 256  # the original system's batch

register_target("ascend", suffixes=(), artifact="G.om", runnable=False)


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
        raise BigBiGANError(f"fixing the batch to {batch} breaks shape inference: {e}") from e


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
        msg = f"{static_path}: the ONNX checker rejects it: {first_line(e)}"
        raise BigBiGANError(msg) from e
    inputs, outputs = onnx_specs(model)
    with staged(static_path) as path:
        onnx.save_model(model, str(path))
        seconds = time.perf_counter() - started
        max_abs = validate(job, OnnxRuntimeRunner, path, batch=batch)
        argv = atc_command(static_path, base, inputs, job.soc_version)
        report = CompileReport("ascend", job.precision, static_path, seconds, format_command(argv))
        report.max_abs_diff = max_abs
        report.sidecar = sidecar_path(static_path)
        meta = compiled_meta(job, report, static_batch=batch, command=report.command)
        meta["inputs"], meta["outputs"] = specs_to_json(inputs), specs_to_json(outputs)
        write_sidecar(path, meta)
    if shutil.which("atc") is None:
        report.note = (
            f"static ONNX, batch {batch}; atc is not on PATH, so {out.name} was not built: "
            "run the command on a machine with the Ascend CANN toolkit"
        )
        return report
    with staged(out) as staged_om:
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
