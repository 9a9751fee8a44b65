"""Freeze the generator (or encoder) into one self-contained ONNX file, validated on the spot.

`export_onnx` builds the offline module (spectral norm folded), exports it with the
torch.export-based exporter (`dynamo=True`: a clean graph with a symbolic batch dim and no
Shape/Constant plumbing, unlike the deprecated TorchScript exporter), runs the ONNX checker, then
runs the file in ONNX Runtime against PyTorch on the same inputs. Only a file within tolerance is
renamed into place, together with its JSON sidecar `G.onnx.json` (config, checkpoint, numbers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bigbigan.config import ModelConfig, to_dict
from bigbigan.documents import document_text, sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import atomic_path
from bigbigan.interface import (
    MAX_BATCH,
    TensorSpec,
    check_feed,
    diff_stats,
    offline_specs,
    quiet_exporter,
    sample_inputs,
    specs_to_json,
    torch_outputs,
    validate_values,
)

if TYPE_CHECKING:
    from bigbigan.training.checkpoint import Checkpoint

SIDECAR_FORMAT = "bigbigan-onnx"
EXPORT_BATCH = 2  # example batch for a dynamic export: not 0 or 1, which torch.export specialises


@dataclass
class ExportReport:
    path: Path  # the ONNX file
    max_abs_diff: float  # ONNX Runtime vs PyTorch, over every validation batch
    mean_abs_diff: float  # over the main validation batch
    inputs: list[TensorSpec]  # as the ONNX file declares them (None: dynamic)
    outputs: list[TensorSpec]
    sidecar: Path | None = None  # `G.onnx.json`
    validate_batch: int = 0
    seconds: float = 0.0  # export + check + validation


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _validation_feeds(
    cfg: ModelConfig,
    specs: list[TensorSpec],
    inputs: dict[str, np.ndarray] | None,
    *,
    encoder: bool,
    batch: int,
    dynamic: bool,
) -> list[dict[str, np.ndarray]]:
    """The feeds an export is validated on: `inputs` (checked like any runner feed) or seeded
    ones of `batch` samples, and with a dynamic batch also their first sample alone."""
    if inputs is not None:
        feed = check_feed(inputs, specs, source="--inputs")
        for spec in specs:
            validate_values(f"--inputs {spec.name}", feed[spec.name], spec, cfg.num_classes)
    else:
        feed = sample_inputs(cfg, encoder=encoder, batch=batch)
    feeds = [feed]
    if dynamic and next(iter(feed.values())).shape[0] != 1:
        feeds.append({name: value[:1] for name, value in feed.items()})
    return feeds


def _export_program(
    module: Any,
    cfg: ModelConfig,
    specs: list[TensorSpec],
    out_specs: list[TensorSpec],
    *,
    encoder: bool,
    static_batch: int | None,
    opset: int,
) -> Any:
    """torch.onnx.export(dynamo=True) of `module`, traced on a seeded example batch; the batch
    dim symbolic (1..MAX_BATCH) unless `static_batch`."""
    import torch

    example = sample_inputs(cfg, encoder=encoder, batch=static_batch or EXPORT_BATCH, seed=1)
    args = tuple(torch.from_numpy(example[spec.name]) for spec in specs)
    names = [spec.name for spec in specs]
    dynamic_shapes = None
    if static_batch is None:
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        dynamic_shapes = {name: {0: batch} for name in names}
    try:
        with quiet_exporter():
            return torch.onnx.export(
                module,
                args,
                input_names=names,
                output_names=[spec.name for spec in out_specs],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                external_data=False,
                optimize=True,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many types; the message is what matters
        raise BigBiGANError(f"--opset {opset}: ONNX export failed: {_first_line(e)}") from e


def _check_file(
    path: Path,
    out: Path,
    module: Any,
    specs: list[TensorSpec],
    out_specs: list[TensorSpec],
    feeds: list[dict[str, np.ndarray]],
) -> tuple[float, float]:
    """Run the ONNX checker on the written file, then ONNX Runtime against PyTorch on every
    feed: (max abs diff over all feeds, mean abs diff on the first)."""
    import onnx

    from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise BigBiGANError(f"{out}: the ONNX checker rejects it: {_first_line(e)}") from e
    with OnnxRuntimeRunner(path) as runner:
        if runner.inputs != specs or runner.outputs != out_specs:
            raise BigBiGANError(
                f"{out}: exported interface {runner.inputs} -> {runner.outputs}, "
                f"expected {specs} -> {out_specs}"
            )
        output = out_specs[0].name
        stats = [
            diff_stats(runner.infer(f)[output], torch_outputs(module, f, specs)) for f in feeds
        ]
    return max(s[0] for s in stats), stats[0][1]


def _sidecar(
    ckpt: Checkpoint,
    specs: list[TensorSpec],
    out_specs: list[TensorSpec],
    encoder: bool,
    opset: int,
    static_batch: int | None,
    validation: dict[str, Any],
) -> dict[str, Any]:
    """The body of `G.onnx.json`: where the file came from, its interface, its validation."""
    import onnx
    import torch

    from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner

    return {
        "role": "encoder" if encoder else "generator",
        "checkpoint": str(ckpt.directory.resolve()),
        "step": ckpt.step,
        "model": to_dict(ckpt.model),
        "opset": opset,
        "static_batch": static_batch,
        "inputs": specs_to_json(specs),
        "outputs": specs_to_json(out_specs),
        "validation": validation,
        "exporter": "torch.onnx.export(dynamo=True)",
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": OnnxRuntimeRunner.version(),
        },
    }


def export_onnx(
    checkpoint_path: str | Path,
    out: str | Path,
    *,
    encoder: bool = False,
    static_batch: int | None = None,
    opset: int = 18,
    validate_batch: int = 8,
    tolerance: float = 1e-5,
    inputs: dict[str, np.ndarray] | None = None,
) -> ExportReport:
    """Export a checkpoint's generator (or encoder) to `out` (.onnx) and validate it.

    Dynamic batch unless `static_batch`. Validation runs ONNX Runtime and PyTorch on `inputs`
    (or seeded ones of `validate_batch`, or `static_batch`, samples), plus one sample when the
    batch is dynamic; a max abs difference above `tolerance` is an error and writes nothing.
    """
    from bigbigan.model.networks import offline_module
    from bigbigan.training.checkpoint import load_model

    started = time.perf_counter()
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise BigBiGANError(f"--out {out}: expected a file name ending in .onnx")
    if static_batch is not None and static_batch < 1:
        raise BigBiGANError(f"--static-batch {static_batch}: expected a positive integer")
    if validate_batch < 1:
        raise BigBiGANError(f"--validate-batch {validate_batch}: expected a positive integer")
    if not tolerance >= 0:
        raise BigBiGANError(f"--tolerance {tolerance}: expected a non-negative number")
    model, ckpt = load_model(checkpoint_path)
    cfg = ckpt.model
    module = offline_module(model, encoder=encoder).eval()
    specs, out_specs = offline_specs(cfg, encoder)
    if static_batch is not None:
        specs = [TensorSpec(s.name, s.dtype, (static_batch, *s.shape[1:])) for s in specs]
        out_specs = [TensorSpec(s.name, s.dtype, (static_batch, *s.shape[1:])) for s in out_specs]
    feeds = _validation_feeds(
        cfg,
        specs,
        inputs,
        encoder=encoder,
        batch=static_batch or validate_batch,
        dynamic=static_batch is None,
    )
    program = _export_program(
        module, cfg, specs, out_specs, encoder=encoder, static_batch=static_batch, opset=opset
    )
    with atomic_path(out) as tmp, atomic_path(sidecar_path(out)) as tmp_meta:
        with quiet_exporter():
            program.save(tmp, external_data=False)
        max_abs, mean_abs = _check_file(tmp, out, module, specs, out_specs, feeds)
        if not max_abs <= tolerance:  # also catches NaN
            raise BigBiGANError(
                f"{out}: ONNX Runtime differs from PyTorch by max {max_abs:.3g} > --tolerance "
                f"{tolerance:g} (mean {mean_abs:.3g}); nothing written"
            )
        validation = {
            "batches": [next(iter(f.values())).shape[0] for f in feeds],
            "max_abs_diff": max_abs,
            "mean_abs_diff": mean_abs,
            "tolerance": tolerance,
            "inputs": "given" if inputs is not None else "seeded (seed 0)",
        }
        meta = _sidecar(ckpt, specs, out_specs, encoder, opset, static_batch, validation)
        tmp_meta.write_text(document_text(SIDECAR_FORMAT, meta))
    return ExportReport(
        path=out,
        max_abs_diff=max_abs,
        mean_abs_diff=mean_abs,
        inputs=specs,
        outputs=out_specs,
        sidecar=sidecar_path(out),
        validate_batch=int(next(iter(feeds[0].values())).shape[0]),
        seconds=time.perf_counter() - started,
    )
