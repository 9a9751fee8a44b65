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

from bigbigan.compare.files import compare_arrays, load_outputs, save_side_by_side
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir, write_text
from bigbigan.infer import InferResult, infer
from bigbigan.runtimes import registry

T = TypeVar("T")

PLAIN = "onnx"  # the plain export, uncompiled; every other target is a registered compile target
DEFAULT_TARGETS = ("onnx", "ort", "aoti")
GRID_FILE = "grid.png"


def known_targets() -> tuple[str, ...]:
    """The `--targets` names: the plain export, then every registered compile target."""
    return (PLAIN, *registry.targets())


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
    """Run every stage for `checkpoint` into `out`; return the report (also written).

    `targets` are "onnx" (the plain export) and registered compile targets (`known_targets()`).
    One function because it is the stages in the order they run, each a call into its module."""
    from bigbigan.compile import compile_model
    from bigbigan.export import export_onnx
    from bigbigan.inputs import make_inputs
    from bigbigan.training import checkpoint as ckpt_io

    known = known_targets()
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise BigBiGANError(f"--targets {','.join(unknown)}: expected some of {', '.join(known)}")
    if loop < 1:
        raise BigBiGANError(f"--loop {loop}: expected a positive number of runs")
    ckpt = ckpt_io.read(checkpoint)
    out = ensure_dir(out)
    noted = [t for t in targets if t != PLAIN and not registry.TARGETS[t].runnable]
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
    for target in targets:
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
        if target in noted:  # built for hardware elsewhere: the report gives its command
            command = report.command or str(report.path)
            notes[target] = f"{command}  ({report.note})" if report.note else command
            continue
        stages.append(progress.run(f"infer {target}", lambda t=target, a=artifact: run(t, a)))

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
    return {"settings": settings, "stages": rows, "notes": notes, "grid": GRID_FILE}


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
