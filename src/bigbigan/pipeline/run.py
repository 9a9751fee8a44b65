"""The pipeline's two chains: `pipeline` from a checkpoint (PyTorch eager is the reference) and
`pipeline_model` from a model the user brings (their reference files are)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bigbigan.compare.files import (
    compare_arrays,
    default_names,
    load_outputs,
    save_side_by_side,
)
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir
from bigbigan.infer import infer
from bigbigan.pipeline.report import (
    build_model_report,
    build_report,
    failed_stages,
    format_markdown,
    format_model_markdown,
    write_report,
)
from bigbigan.pipeline.stages import (
    DEFAULT_TARGETS,
    GRID_FILE,
    PLAIN,
    Progress,
    Stage,
    check_targets,
    compile_and_run,
    noted_targets,
)

PB_REFERENCE = "pb_out.bin"  # the original's frozen-graph output, looked for beside --reference


def _check(targets: Sequence[str], loop: int, device: str) -> None:
    check_targets(targets, device)
    if loop < 1:
        raise BigBiGANError(f"--loop {loop}: expected a positive number of runs")


def pipeline(
    checkpoint: str | Path,
    out: str | Path,
    *,
    targets: Sequence[str] = DEFAULT_TARGETS,
    batch: int = 256,
    loop: int = 5,
    seed: int = 0,
    device: str = "cpu",
    tolerance: float = 1e-4,
    echo: bool = True,
) -> dict[str, Any]:
    """Run every stage for `checkpoint` into `out`; return the report (also written)."""
    from bigbigan.export import export_onnx
    from bigbigan.inputs import make_inputs
    from bigbigan.training import checkpoint as ckpt_io

    _check(targets, loop, device)
    ckpt = ckpt_io.read(checkpoint)
    out = ensure_dir(out)
    noted = noted_targets(targets)
    progress = Progress(4 + 2 * len(targets) - (PLAIN in targets) - len(noted), echo)

    inputs = progress.run(
        f"make-inputs (batch {batch}, seed {seed})",
        lambda: make_inputs(
            out / "inputs",
            batch=batch,
            seed=seed,
            num_classes=ckpt.model.num_classes,
            z_dim=ckpt.model.z_dim,
        )[: 2 if ckpt.model.conditional else 1],
    )

    def run(name: str, model: Path) -> Stage:
        result = infer(model, inputs, out / name, loop=loop, device=device)
        return Stage(name, model, result)

    stages = [
        progress.run("generate (PyTorch eager reference)", lambda: run("pytorch", ckpt.directory))
    ]
    onnx_path = out / "G.onnx"
    progress.run(
        "export (ONNX, validated in ONNX Runtime)",
        lambda: export_onnx(ckpt.directory, onnx_path, tolerance=tolerance),
    )
    notes: dict[str, str] = {}
    stages += compile_and_run(
        onnx_path,
        targets,
        out,
        progress,
        run,
        notes,
        device=device,
        batch=batch,
        tolerance=tolerance,
    )

    arrays = progress.run("compare", lambda: load_outputs([s.result.outputs[0] for s in stages]))
    names = [s.name for s in stages]
    pairs = compare_arrays(
        arrays, names, [s.result.outputs[0] for s in stages], tolerance=tolerance
    )
    save_side_by_side(arrays, names, out / GRID_FILE)
    report = build_report(stages, pairs, notes, batch=batch, loop=loop, device=device)
    write_report(out, report, format_markdown(report))
    failed = [p.name for p in pairs if p.passed is False]
    if failed:
        raise BigBiGANError(
            f"stages {', '.join(failed)} differ from the PyTorch reference by more than "
            f"--tolerance {tolerance} (mean abs); see {out / 'report.md'}"
        )
    return report


def pipeline_model(
    model: str | Path,
    out: str | Path,
    *,
    inputs: str | Path,
    reference: str | Path,
    targets: Sequence[str] = DEFAULT_TARGETS,
    loop: int = 5,
    device: str = "cpu",
    tolerance: float = 1e-4,
    echo: bool = True,
) -> dict[str, Any]:
    """The chain for a model the user brings (the original's `bigbigan.pb`, or an ONNX) and
    their own files: import (a `.pb`) -> compile -> infer on `inputs` (a folder with
    fake_image.bin and label.bin, or a.bin,b.bin), every stage compared with `reference`
    (their gpu_out.bin) and with pb_out.bin beside it when present. aoti needs a PyTorch
    checkpoint: recovered from a `.pb` of the reference generator, or named by an ONNX's
    sidecar; else the target is skipped with the reason."""
    from bigbigan.importers import is_frozen_graph

    model, reference = Path(model), Path(reference)
    _check(targets, loop, device)
    for flag, path in (("--model", model), ("--reference", reference)):
        if not path.exists():
            raise BigBiGANError(f"{flag} {path}: no such file")
    references = [reference] + [
        p for p in [reference.with_name(PB_REFERENCE)] if p.is_file() and p != reference
    ]
    out = ensure_dir(out)
    compiled = [t for t in targets if t != PLAIN]
    steps = is_frozen_graph(model) + 2 + 2 * len(compiled) - len(noted_targets(compiled))
    progress = Progress(steps, echo)  # less any target skipped below
    onnx_path = _import_model(model, out, progress, targets, tolerance)
    items = [str(inputs)] if Path(inputs).exists() else str(inputs).split(",")

    def run(name: str, path: Path) -> Stage:
        result = infer(path, items, out / name, loop=loop, device=device)
        return Stage(name, path, result)

    skip = _unbuildable(onnx_path, targets)
    progress.total -= 2 * len(skip)
    notes: dict[str, str] = {}
    first = progress.run("infer onnx (the model as given)", lambda: run("onnx", onnx_path))
    stages = [first] + compile_and_run(
        onnx_path,
        compiled,
        out,
        progress,
        run,
        notes,
        device=device,
        batch=first.result.batch,
        tolerance=tolerance,
        skip=skip,
    )
    assumed: list[str] = []
    ref_names, by_reference = progress.run(
        "compare", lambda: _compare_with(references, stages, out, tolerance, assumed)
    )
    settings = {"model": str(model), "inputs": str(inputs), "batch": first.result.batch,
                "loop": loop, "device": device, "tolerance": tolerance}  # fmt: skip
    named = {n: str(p) for n, p in zip(ref_names, references, strict=True)}
    report = build_model_report(stages, by_reference, named, notes, assumed, settings)
    write_report(out, report, format_model_markdown(report))
    failed = failed_stages(report)
    if failed:
        raise BigBiGANError(
            f"stages {', '.join(failed)} differ from {reference} by more than --tolerance "
            f"{tolerance} (mean abs); see {out / 'report.md'}"
        )
    return report


def _import_model(
    model: Path, out: Path, progress: Progress, targets: Sequence[str], tolerance: float
) -> Path:
    """The ONNX the chain starts from: `model` itself, or a `.pb`'s import into `out` (with the
    PyTorch checkpoint recovered from it when aoti, or auto's aoti candidates, may need one)."""
    from bigbigan.importers import is_frozen_graph

    if not is_frozen_graph(model):
        return model
    from bigbigan.importers.tensorflow import import_pb

    onnx_path = out / "G.onnx"
    wants_checkpoint = "aoti" in targets or "auto" in targets
    imported = progress.run(
        "import (tf2onnx, validated against TensorFlow)",
        lambda: import_pb(
            model,
            onnx_path,
            tolerance=tolerance,
            checkpoint_out=out / "checkpoint" if wants_checkpoint else None,
            checkpoint_optional=True,
        ),
    )
    progress.say(imported.one_line())
    return onnx_path


def _unbuildable(onnx_path: Path, targets: Sequence[str]) -> dict[str, str]:
    """Targets that cannot be built from this ONNX, with why: aoti without a PyTorch checkpoint
    (auto's aoti candidates are left out by autotune itself, with the same reason)."""
    from bigbigan.interface import read_model_sidecar

    meta = read_model_sidecar(onnx_path) or {}
    if "aoti" in targets and not meta.get("checkpoint"):
        why = meta.get("checkpoint_recovery") or "a .pb of the reference generator recovers one"
        return {"aoti": f"{onnx_path.name} names no PyTorch checkpoint to compile ({why})"}
    return {}


def _compare_with(
    references: list[Path],
    stages: Sequence[Stage],
    out: Path,
    tolerance: float,
    assumed: list[str],
) -> tuple[list[str], dict[str, Any]]:
    """Every stage's output against each reference file (the grid drawn too); returns the
    references' names and, by name, the comparison's pairs."""
    outputs = [s.result.outputs[0] for s in stages]
    arrays = load_outputs([*references, *outputs], notes=assumed)
    found = arrays[len(references) :]
    ref_names = default_names(references)
    stage_names = [s.name for s in stages]
    by_reference = {
        name: compare_arrays(
            [ref, *found], [name, *stage_names], [path, *outputs], tolerance=tolerance
        )
        for name, ref, path in zip(ref_names, arrays, references, strict=False)
    }
    save_side_by_side(arrays, [*ref_names, *stage_names], out / GRID_FILE)
    return ref_names, by_reference
