"""`bigbigan infer`: msame's offline run, with what ais_bench, trtexec and Polygraphy add.

The stage wires the harness together: `--input` resolves to batches (harness/inputs.py), the
runner runs them under the one timing loop (harness/timing.py: `warmup` untimed calls, then
`loop` timed calls or as many as fit in `duration` seconds, each between two device
synchronises), and the run is written down (harness/summary.py). Outputs are msame's
`<model-stem>_output_<i>.bin|.txt|.npy` (folder inputs: `<input-file-stem>_output_<i>`), and the
summary is `<model-stem>_summary.json` beside them and, if asked, `summary`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan import limits
from bigbigan.binio import save_bin, save_npy, save_txt
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir, write_text
from bigbigan.harness.inputs import InputSet, model_num_classes, resolve_inputs
from bigbigan.harness.machine import peak_rss_mb
from bigbigan.harness.summary import InferResult, build_summary, validate_summary
from bigbigan.harness.timing import time_runner
from bigbigan.interface import check_feed
from bigbigan.runtimes import Runner, open_runner

OUTFMTS = ("BIN", "TXT", "NPY")
WRITERS = {"BIN": save_bin, "TXT": save_txt, "NPY": save_npy}


def model_stem(path: Path) -> str:
    """msame names outputs after the model file; a checkpoint is named after its directory."""
    if path.is_dir():
        return path.resolve().name
    if path.name == "checkpoint.json":
        return path.resolve().parent.name
    return path.stem


def write_outputs(
    outputs: dict[str, np.ndarray], out_dir: Path, stem: str, outfmt: str
) -> list[Path]:
    """msame's output files: `<stem>_output_<i>.bin|.txt` (or `.npy`), one per model output."""
    paths = []
    for index, array in enumerate(outputs.values()):
        path = out_dir / f"{stem}_output_{index}.{outfmt.lower()}"
        WRITERS[outfmt](path, array)
        paths.append(path)
    return paths


def _gather(outputs: list[dict[str, np.ndarray]], real: list[int]) -> dict[str, np.ndarray]:
    """The outputs of every batch, padding dropped, concatenated in input order."""
    names = list(outputs[0])
    return {
        name: np.concatenate([out[name][:n] for out, n in zip(outputs, real, strict=True)])
        for name in names
    }


def _write(
    arrays: dict[str, np.ndarray], data: InputSet, out_dir: Path, stem: str, outfmt: str
) -> tuple[list[Path], dict[str, Path]]:
    """Write the outputs: split back per input file for folder inputs, else one file per
    output. Returns every path and, for whole outputs, {output name: path}."""
    if data.source != "folder":
        paths = write_outputs(arrays, out_dir, stem, outfmt)
        return paths, dict(zip(arrays, paths, strict=True))
    paths: list[Path] = []
    for group in data.groups:
        piece = {k: v[group.start : group.start + group.count] for k, v in arrays.items()}
        stem_i = next(iter(group.inputs.values())).stem
        files = write_outputs(piece, out_dir, stem_i, outfmt)
        group.outputs = dict(zip(piece, files, strict=True))
        paths += files
    return paths, {}


def _check_arguments(
    outfmt: str,
    loop: int | None,
    duration: float | None,
    warmup: int,
    batch: int | None,
    summary: str | Path | None,
) -> None:
    """One-line errors naming the flag, before anything is loaded."""
    if outfmt not in OUTFMTS:
        raise BigBiGANError(f"--outfmt {outfmt}: expected one of {', '.join(OUTFMTS)}")
    if loop is not None and duration is not None:
        raise BigBiGANError("--loop and --duration: give one or the other")
    if loop is not None and loop < 1:
        raise BigBiGANError(f"--loop {loop}: expected a positive number of runs")
    if duration is not None and not (duration > 0 and math.isfinite(duration)):
        raise BigBiGANError(f"--duration {duration}: expected a positive number of seconds")
    if warmup < 0:
        raise BigBiGANError(f"--warmup {warmup}: expected zero or more runs")
    if batch is not None and batch < 1:
        raise BigBiGANError(f"--batch {batch}: expected a positive batch size")
    if summary is not None and Path(summary).is_dir():
        raise BigBiGANError(f"--summary {summary}: is a directory, expected a .json file name")


def _label(runner: Runner, streams: int, micro_batch: int) -> str:
    """`onnxruntime, 4 streams, micro-batch 32`: how the model ran."""
    return ", ".join(
        [runner.name]
        + ([f"{streams} streams"] if streams > 1 else [])
        + ([f"micro-batch {micro_batch}"] if micro_batch else [])
    )


_ARGUMENTS = ("model", "backend", "device", "threads", "streams", "micro_batch", "input", "batch")
_ARGUMENTS += ("seed", "warmup", "loop", "duration_s", "outfmt", "output_dir")


def _arguments(
    call: dict[str, Any], inputs: Sequence[str | Path] | None, out_dir: Path | None
) -> dict[str, Any]:
    """The summary's `arguments`: the call as given, paths as strings, in schema order."""
    values = {
        **call,
        "model": str(call["model"]),
        "input": [str(i) for i in inputs] if inputs else None,
        "loop": call["loop"] if call["duration"] is None else None,
        "duration_s": call["duration"],
        "output_dir": str(out_dir) if out_dir else None,
    }
    return {key: values[key] for key in _ARGUMENTS}


def infer(
    model: str | Path,
    inputs: Sequence[str | Path] | None,
    output_dir: str | Path | None,
    *,
    outfmt: str = "BIN",
    loop: int | None = None,
    duration: float | None = None,
    warmup: int = 0,
    batch: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    backend: str | None = None,
    threads: int | None = None,
    streams: int = 1,
    micro_batch: int = 0,
    summary: str | Path | None = None,
    **options: Any,
) -> InferResult:
    """Run `model` on `inputs` (see harness/inputs.py) and write its outputs and summary into
    `output_dir` (None: write no outputs) and, given, the summary to `summary` too.

    `loop` timed passes (default 1) or, instead, passes until `duration` seconds are spent;
    `warmup` untimed calls first; `batch` for synthetic or folder inputs (default: the model's
    static batch, else 256). `streams` > 1 splits each batch across that many copies of the
    model, `threads` each (throughput mode, CPU; see bigbigan.runtimes.streams); `micro_batch`
    > 0 runs larger batches in slices of that many samples (Runner.micro_batch).
    """
    outfmt = outfmt.upper()
    _check_arguments(outfmt, loop, duration, warmup, batch, summary)
    model = Path(model)
    out_dir = ensure_dir(output_dir, flag="--output") if output_dir is not None else None
    arguments = _arguments(locals(), inputs, out_dir)  # the parameters, as called
    if duration is None and loop is None:
        arguments["loop"] = loop = 1
    stem = model_stem(model)
    runner_options = dict(threads=threads, streams=streams, micro_batch=micro_batch, **options)
    with open_runner(model, backend=backend, device=device, **runner_options) as runner:
        if batch is not None:
            limits.check_batch("--batch", batch, limits.spec_bytes(runner.inputs + runner.outputs))
        data = resolve_inputs(
            inputs, runner.inputs, num_classes=model_num_classes(model), batch=batch, seed=seed
        )
        limits.check_split(streams, micro_batch, data.batch)
        for feed in data.batches:
            check_feed(feed, runner.inputs, source="--input")
        timing, outputs = time_runner(
            runner, data.batches, warmup=warmup, loop=loop or 1, duration=duration
        )
        arrays = _gather(outputs, data.real)
        paths, written = [], {}
        if out_dir is not None:
            paths, written = _write(arrays, data, out_dir, stem, outfmt)
        n_runs, per_pass = len(timing.runs_ms), len(data.batches)
        result = InferResult(
            model,
            _label(runner, streams, micro_batch),
            paths,
            timing.runs_ms,
            data.batch,
            runner.load_seconds or 0.0,
            arrays,
            warmup=timing.warmup,
            images_per_call=sum(data.real[i % per_pass] for i in range(n_runs)) / n_runs,
            phases_ms=timing.phases_ms,
            peak_rss_mb=peak_rss_mb(),
        )
        result.summary_doc = build_summary(result, data, runner, arguments, written)
    validate_summary(result.summary_doc)
    if out_dir is not None:
        result.summary_paths.append(out_dir / f"{stem}_summary.json")
    if summary is not None:
        result.summary_paths.append(Path(summary))
    text = json.dumps(result.summary_doc, indent=2) + "\n"  # built under its header
    for path in result.summary_paths:
        write_text(path, text)
    return result
