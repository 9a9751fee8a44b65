"""The pipeline's targets and how each becomes a stage: the plain export run as it is, a
registered compile target compiled and run, `auto` compiled as `compile --target auto` does,
a target for hardware elsewhere only compiled (its command goes into the report's notes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bigbigan.errors import BigBiGANError
from bigbigan.harness.summary import InferResult
from bigbigan.runtimes import registry

T = TypeVar("T")

PLAIN = "onnx"  # the plain export, uncompiled; every other target is a registered compile target
AUTO = "auto"  # the artefact `compile --target auto` keeps on this machine
AUTO_STEM = "G.auto"  # its file: G.auto.onnx or G.auto.pt2, by the winner's suffix
DEFAULT_TARGETS = ("onnx", "ort", "aoti")
GRID_FILE = "grid.png"


def known_targets() -> tuple[str, ...]:
    """The `--targets` names: the plain export, every registered compile target, then auto."""
    return (PLAIN, *registry.targets(), AUTO)


def check_targets(targets: Sequence[str], device: str = "cpu") -> None:
    """Refuse unknown targets, and auto off the CPU, before any slow step."""
    known = known_targets()
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise BigBiGANError(f"--targets {','.join(unknown)}: expected some of {', '.join(known)}")
    if AUTO in targets and device != "cpu":
        raise BigBiGANError(
            f"--targets {AUTO} with --device {device}: the automatic choice is among CPU "
            "artefacts only"
        )


def noted_targets(targets: Sequence[str]) -> list[str]:
    """Targets built for hardware elsewhere: compiled, not run; the report gives their command."""
    return [t for t in targets if t not in (PLAIN, AUTO) and not registry.TARGETS[t].runnable]


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

    def say(self, line: str) -> None:
        """A line under the last stage's (what a stage found worth telling)."""
        if self.echo:
            print(f"  {line}", flush=True)


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
    hardware elsewhere (ascend) only gives its command (into `notes`), `auto` its one-line
    reason for the artefact it kept (into `notes`: auto chooses within `tolerance`, the bound
    its stage is then checked against), and `skip` names targets left out, with why."""
    from bigbigan.compile import compile_model

    stages = []
    for target in targets:
        if skip and target in skip:
            notes[target] = f"skipped: {skip[target]}"
            continue
        if target == PLAIN:
            stages.append(progress.run("infer onnx", lambda: run(PLAIN, onnx_path)))
            continue
        auto = target == AUTO
        artifact = out / (AUTO_STEM if auto else registry.TARGETS[target].artifact)
        options = {"precision": AUTO, "max_mean_diff": tolerance} if auto else {}
        label = f"compile {target}" + (" (every candidate built and timed here)" if auto else "")
        report = progress.run(
            label,
            lambda t=target, a=artifact, o=options: compile_model(
                onnx_path, target=t, out=a, device=device, batch=batch, tolerance=tolerance, **o
            ),
        )
        if auto:
            notes[target] = report.note
            progress.say(report.note)
        elif target in noted_targets([target]):  # built for hardware elsewhere: its command
            command = report.command or str(report.path)
            notes[target] = f"{command}  ({report.note})" if report.note else command
            continue
        stages.append(progress.run(f"infer {target}", lambda t=target, p=report.path: run(t, p)))
    return stages
