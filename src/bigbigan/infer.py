"""`bigbigan infer`: msame's offline run, for every backend behind the Runner interface.

Input files are matched to the model's inputs in order and checked against the model's own
metadata; outputs are written as `<model-stem>_output_<i>.bin` (or `.txt`), and every loop is
timed (warm-up excluded from the "without first" figures, a device synchronise before each read).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.binio import TensorSpec, load_bin, save_bin, save_txt, validate_values
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir, write_text
from bigbigan.runtimes import Runner, open_runner

OUTFMTS = ("BIN", "TXT")


@dataclass
class InferResult:
    model: Path
    backend: str
    outputs: list[Path]
    loop_ms: list[float]  # wall time of each loop, milliseconds
    batch: int
    load_seconds: float
    arrays: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.loop_ms)

    @property
    def mean_ms_without_first(self) -> float:
        return statistics.fmean(self.loop_ms[1:] or self.loop_ms)

    @property
    def images_per_s(self) -> float:
        return self.batch / (self.mean_ms_without_first / 1e3)

    def summary(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "backend": self.backend,
            "batch": self.batch,
            "loop": len(self.loop_ms),
            "load_s": round(self.load_seconds, 4),
            "loop_ms": [round(t, 4) for t in self.loop_ms],
            "mean_ms": round(self.mean_ms, 4),
            "mean_ms_without_first": round(self.mean_ms_without_first, 4),
            "images_per_s": round(self.images_per_s, 2),
            "outputs": [str(p) for p in self.outputs],
        }


def model_stem(path: Path) -> str:
    """msame names outputs after the model file; a checkpoint is named after its directory."""
    if path.is_dir():
        return path.resolve().name
    if path.name == "checkpoint.json":
        return path.resolve().parent.name
    return path.stem


def model_num_classes(path: Path) -> int | None:
    """The label range a model accepts, from its checkpoint or its export/compile sidecar."""
    if path.is_dir() or path.name == "checkpoint.json":
        from bigbigan import checkpoint

        return checkpoint.read(path).model.num_classes
    sidecar = path.with_name(path.name + ".json")
    try:
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    model = meta.get("model") if isinstance(meta, dict) else None
    return model.get("num_classes") if isinstance(model, dict) else None


def read_inputs(
    files: Sequence[str | Path], specs: list[TensorSpec], num_classes: int | None
) -> dict[str, np.ndarray]:
    """Load one `.bin` per model input, in order, and check sizes, dtypes and values."""
    if len(files) != len(specs):
        names = ", ".join(s.name for s in specs)
        raise BigBiGANError(
            f"--input: {len(files)} file(s) given, the model has {len(specs)} input(s) ({names})"
        )
    feed = {}
    for path, spec in zip(files, specs, strict=True):
        array = load_bin(path, spec)
        validate_values(path, array, spec, num_classes)
        feed[spec.name] = array
    return feed


def time_loops(runner: Runner, feed: dict[str, np.ndarray], loop: int) -> tuple[list, dict]:
    """Run `loop` times; return the per-loop milliseconds and the last outputs."""
    times, outputs = [], {}
    for _ in range(loop):
        runner.synchronize()
        start = time.perf_counter()
        outputs = runner.infer(feed)
        runner.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return times, outputs


def write_outputs(
    outputs: dict[str, np.ndarray], out_dir: Path, stem: str, outfmt: str
) -> list[Path]:
    paths = []
    for index, array in enumerate(outputs.values()):
        path = out_dir / f"{stem}_output_{index}.{outfmt.lower()}"
        (save_bin if outfmt == "BIN" else save_txt)(path, array)
        paths.append(path)
    return paths


def infer(
    model: str | Path,
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    *,
    outfmt: str = "BIN",
    loop: int = 1,
    device: str = "cpu",
    backend: str | None = None,
    threads: int | None = None,
    **options: Any,
) -> InferResult:
    """Run `model` on the input files and write its outputs into `output_dir` (msame's flags)."""
    outfmt = outfmt.upper()
    if outfmt not in OUTFMTS:
        raise BigBiGANError(f"--outfmt {outfmt}: expected one of {', '.join(OUTFMTS)}")
    if loop < 1:
        raise BigBiGANError(f"--loop {loop}: expected a positive number of runs")
    model = Path(model)
    out_dir = ensure_dir(output_dir, flag="--output")
    with open_runner(model, backend=backend, device=device, threads=threads, **options) as runner:
        feed = read_inputs(inputs, runner.inputs, model_num_classes(model))
        loop_ms, outputs = time_loops(runner, feed, loop)
        paths = write_outputs(outputs, out_dir, model_stem(model), outfmt)
        batch = next(iter(feed.values())).shape[0]
        result = InferResult(
            model, runner.name, paths, loop_ms, batch, runner.load_seconds or 0.0, outputs
        )
    write_text(
        out_dir / f"{model_stem(model)}_summary.json", json.dumps(result.summary(), indent=2)
    )
    return result


def format_summary(result: InferResult) -> str:
    """The lines msame prints, plus throughput."""
    lines = [f"[{result.backend}] {result.model}: batch {result.batch}, loop {len(result.loop_ms)}"]
    lines += [f"  loop {i + 1}: {t:.3f} ms" for i, t in enumerate(result.loop_ms)]
    lines += [
        f"  Inference average time: {result.mean_ms:.3f} ms",
        f"  Inference average time without first time: {result.mean_ms_without_first:.3f} ms",
        f"  throughput: {result.images_per_s:.1f} images/s",
        f"  model load: {result.load_seconds:.2f} s",
    ]
    lines += [f"  output: {p}" for p in result.outputs]
    return "\n".join(lines)
