"""`bigbigan pipeline`: make-inputs -> generate -> export -> compile -> infer -> compare, in one
command, ending in `report.json`, `report.md` and the side-by-side grid.

Every stage is the same function its own subcommand calls; the reference is PyTorch eager on
the checkpoint, and every other stage is compared with it on the same input files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bigbigan.compare.files import (
    compare_arrays,
    default_names,
    load_outputs,
    save_side_by_side,
)
from bigbigan.documents import document
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir, write_text
from bigbigan.harness.summary import InferResult
from bigbigan.infer import infer
from bigbigan.runtimes import registry

T = TypeVar("T")

PLAIN = "onnx"  # the plain export, uncompiled; every other target is a registered compile target
DEFAULT_TARGETS = ("onnx", "ort", "aoti")
GRID_FILE = "grid.png"
REPORT_FORMAT = "bigbigan-pipeline"


def known_targets() -> tuple[str, ...]:
    """The `--targets` names: the plain export, then every registered compile target."""
    return (PLAIN, *registry.targets())


def check_targets(targets: Sequence[str]) -> None:
    known = known_targets()
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise BigBiGANError(f"--targets {','.join(unknown)}: expected some of {', '.join(known)}")


def noted_targets(targets: Sequence[str]) -> list[str]:
    """Targets built for hardware elsewhere: compiled, not run; the report gives their command."""
    return [t for t in targets if t != PLAIN and not registry.TARGETS[t].runnable]


@dataclass
class Stage:
    """One row of the report: a model run on the shared inputs."""

    name: str
    model: Path
    result: InferResult


class Progress:
    """Numbered stage lines with their wall time: `[3/9] export ... 2.1 s`."""

    def __init__(self, total: int, echo: bool) -> None:
        self.total, self.index, self.echo = total, 0, echo

    def run(self, label: str, func: Callable[[], T]) -> T:
        self.index += 1
        if self.echo:
            print(f"[{self.index}/{self.total}] {label} ...", end="", flush=True)
        started = time.perf_counter()
        value = func()
        if self.echo:
            print(f" {time.perf_counter() - started:.1f} s", flush=True)
        return value


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

    check_targets(targets)
    if loop < 1:
        raise BigBiGANError(f"--loop {loop}: expected a positive number of runs")
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
    write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_text(out / "report.md", format_markdown(report))
    failed = [p.name for p in pairs if p.passed is False]
    if failed:
        raise BigBiGANError(
            f"stages {', '.join(failed)} differ from the PyTorch reference by more than "
            f"--tolerance {tolerance} (mean abs); see {out / 'report.md'}"
        )
    return report


PB_REFERENCE = "pb_out.bin"  # the original's frozen-graph output, looked for beside --reference


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
    from bigbigan.interface import read_model_sidecar

    model, reference = Path(model), Path(reference)
    check_targets(targets)
    if loop < 1:
        raise BigBiGANError(f"--loop {loop}: expected a positive number of runs")
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
    onnx_path = model
    if is_frozen_graph(model):
        from bigbigan.importers.tensorflow import import_pb

        onnx_path = out / "G.onnx"
        imported = progress.run(
            "import (tf2onnx, validated against TensorFlow)",
            lambda: import_pb(
                model,
                onnx_path,
                tolerance=tolerance,
                checkpoint_out=out / "checkpoint" if "aoti" in targets else None,
                checkpoint_optional=True,
            ),
        )
        if echo:
            print(f"  {imported.one_line()}")
    items = [str(inputs)] if Path(inputs).exists() else str(inputs).split(",")

    def run(name: str, path: Path) -> Stage:
        result = infer(path, items, out / name, loop=loop, device=device)
        return Stage(name, path, result)

    meta = read_model_sidecar(onnx_path) or {}
    skip = {}
    if "aoti" in targets and not meta.get("checkpoint"):
        why = meta.get("checkpoint_recovery") or "a .pb of the reference generator recovers one"
        skip["aoti"] = f"{onnx_path.name} names no PyTorch checkpoint to compile ({why})"
    progress.total -= 2 * len(skip)
    notes: dict[str, str] = {}
    first = progress.run("infer onnx (the model as given)", lambda: run("onnx", onnx_path))
    stages = [first] + compile_and_run(
        onnx_path,
        [t for t in targets if t != "onnx"],
        out,
        progress,
        run,
        notes,
        device=device,
        batch=first.result.batch,
        tolerance=tolerance,
        skip=skip,
    )
    outputs = [s.result.outputs[0] for s in stages]
    assumed: list[str] = []
    arrays = progress.run("compare", lambda: load_outputs([*references, *outputs], notes=assumed))
    found = arrays[len(references) :]
    ref_names = default_names(references)
    names = [*ref_names, *(s.name for s in stages)]
    by_reference = {
        name: compare_arrays(
            [ref, *found], [name, *names[len(references) :]], [path, *outputs], tolerance=tolerance
        )
        for name, ref, path in zip(ref_names, arrays, references, strict=False)
    }
    save_side_by_side(arrays, names, out / GRID_FILE)
    rows = []
    for stage in stages:
        row = {
            "name": stage.name,
            "model": str(stage.model),
            "output": str(stage.result.outputs[0]),
        }
        for ref, pairs in by_reference.items():
            pair = next(p for p in pairs if p.name == stage.name)
            row[f"vs_{ref}"] = {k: pair.stats[k] for k in ("mean_abs_diff", "max_abs_diff")}
            row[f"vs_{ref}"]["passed"] = pair.passed
        row |= {
            "images_per_s": round(stage.result.images_per_s, 2),
            "mean_ms": round(stage.result.mean_ms_without_first, 3),
            "load_s": round(stage.result.load_seconds, 3),
        }
        rows.append(row)
    report = document(
        REPORT_FORMAT,
        {
            "settings": {
                "model": str(model),
                "inputs": str(inputs),
                "batch": first.result.batch,
                "loop": loop,
                "device": device,
                "tolerance": tolerance,
            },
            "references": {n: str(p) for n, p in zip(ref_names, references, strict=True)},
            "assumed": assumed,
            "stages": rows,
            "notes": notes,
            "grid": GRID_FILE,
        },
    )
    write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_text(out / "report.md", format_model_markdown(report))
    failed = sorted(
        {
            row["name"]
            for row in rows
            for k, v in row.items()
            if k.startswith("vs_") and v["passed"] is False
        }
    )
    if failed:
        raise BigBiGANError(
            f"stages {', '.join(failed)} differ from {reference} by more than --tolerance "
            f"{tolerance} (mean abs); see {out / 'report.md'}"
        )
    return report


def format_model_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    refs = list(report["references"])
    lines = [
        "# bigbigan pipeline report",
        "",
        f"Model `{s['model']}`, inputs `{s['inputs']}`, batch {s['batch']}, {s['loop']} timed "
        f"loops (first excluded from the mean), device {s['device']}. Differences are mean / max "
        "abs against the user's reference files: "
        + ", ".join(f"{n} = `{p}`" for n, p in report["references"].items())
        + ".",
        "",
        "| stage | model | "
        + " | ".join(f"vs {r} (mean / max)" for r in refs)
        + " | images/s | ms / batch |",
        "|---|---|" + "---:|" * (len(refs) + 2),
    ]
    for r in report["stages"]:
        diffs = " | ".join(
            f"{r['vs_' + ref]['mean_abs_diff']:.3g} / {r['vs_' + ref]['max_abs_diff']:.3g}"
            for ref in refs
        )
        lines.append(
            f"| {r['name']} | `{Path(r['model']).name}` | {diffs} | {r['images_per_s']:.1f} | "
            f"{r['mean_ms']:.2f} |"
        )
    lines += ["", *(f"assumed: {a}" for a in report["assumed"])]
    for target, note in report["notes"].items():
        lines += ["", f"**{target}**: `{note}`"]
    lines += ["", f"![first 8 images of every file]({report['grid']})", ""]
    return "\n".join(lines)


def compile_and_run(
    onnx_path: Path,
    targets: Sequence[str],
    out: Path,
    progress: Progress,
    run: Callable[[str, Path], Stage],
    notes: dict[str, str],
    *,
    device: str,
    batch: int,
    tolerance: float,
    skip: dict[str, str] | None = None,
) -> list[Stage]:
    """Per target: the ONNX itself ("onnx"), or compile it and run the artifact; a target for
    hardware elsewhere (ascend) only gives its command (into `notes`), and `skip` names targets
    left out, with why."""
    from bigbigan.compile import compile_model

    stages = []
    for target in targets:
        if skip and target in skip:
            notes[target] = f"skipped: {skip[target]}"
            continue
        if target == PLAIN:
            stages.append(progress.run("infer onnx", lambda: run(PLAIN, onnx_path)))
            continue
        artifact = out / registry.TARGETS[target].artifact
        report = progress.run(
            f"compile {target}",
            lambda t=target, a=artifact: compile_model(
                onnx_path, target=t, out=a, device=device, batch=batch, tolerance=tolerance
            ),
        )
        if target in noted_targets([target]):  # built for hardware elsewhere: give its command
            command = report.command or str(report.path)
            notes[target] = f"{command}  ({report.note})" if report.note else command
            continue
        stages.append(progress.run(f"infer {target}", lambda t=target, a=artifact: run(t, a)))
    return stages


def build_report(
    stages: Sequence[Stage], pairs: Sequence[Any], notes: dict[str, str], **settings: Any
) -> dict[str, Any]:
    diffs = {p.name: p.stats for p in pairs}
    rows = []
    for stage in stages:
        stats = diffs.get(stage.name, {"mean_abs_diff": 0.0, "max_abs_diff": 0.0})
        rows.append(
            {
                "name": stage.name,
                "model": str(stage.model),
                "output": str(stage.result.outputs[0]),
                "mean_abs_diff": stats["mean_abs_diff"],
                "max_abs_diff": stats["max_abs_diff"],
                "images_per_s": round(stage.result.images_per_s, 2),
                "mean_ms": round(stage.result.mean_ms_without_first, 3),
                "load_s": round(stage.result.load_seconds, 3),
            }
        )
    body = {"settings": settings, "stages": rows, "notes": notes, "grid": GRID_FILE}
    return document(REPORT_FORMAT, body)


def format_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# bigbigan pipeline report",
        "",
        f"Batch {s['batch']}, {s['loop']} timed loops (first excluded from the mean), "
        f"device {s['device']}. Differences are against the PyTorch eager reference "
        "on the same input files.",
        "",
        "| stage | model | mean abs diff | max abs diff | images/s | ms / batch | load s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["stages"]:
        lines.append(
            f"| {r['name']} | `{Path(r['model']).name}` | {r['mean_abs_diff']:.3g} | "
            f"{r['max_abs_diff']:.3g} | {r['images_per_s']:.1f} | {r['mean_ms']:.2f} | "
            f"{r['load_s']:.2f} |"
        )
    for target, note in report["notes"].items():
        lines += ["", f"**{target}**: `{note}`"]
    lines += ["", f"![first 8 images of every stage]({report['grid']})", ""]
    return "\n".join(lines)
