"""`bigbigan infer`: msame's offline run, with what ais_bench, trtexec and Polygraphy add.

Inputs (`--input`, comma-separated), matched to the model's inputs and checked against its own
metadata:
- files: raw `.bin` (with or without sidecar) or `.npy`, one per input, by position or by name
  (`x2:labels.bin,x1:noise.bin`); a `make-inputs` directory stands for its files;
- folders of per-sample files (one folder per input, or one folder with a sub-folder per input
  name): read in sorted order, batched to the model's batch (the last batch padded when the batch
  is static), and the outputs split back into one file per input file;
- nothing: seeded synthetic inputs of the right dtypes and ranges (`export.random_feed`).

Runs: `warmup` untimed calls, then `loop` timed calls (or as many as fit in `duration` seconds),
each between two device synchronises. Outputs are msame's `<model-stem>_output_<i>.bin|.txt`
(folder inputs: `<input-file-stem>_output_<i>`), and the summary is one JSON document of a
fixed, versioned schema (`SUMMARY_FIELDS`, `validate_summary`) written as
`<model-stem>_summary.json` beside them and, if asked, to `summary`.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan import limits
from bigbigan.binio import (
    TensorSpec,
    dtype_mismatch,
    load_bin,
    load_npy,
    save_bin,
    save_npy,
    save_txt,
    validate_values,
)
from bigbigan.compare.statistics import latency_stats
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir, write_text
from bigbigan.importers import resolve_model
from bigbigan.runtimes import Runner, open_runner
from bigbigan.runtimes.base import check_feed, specs_to_json

OUTFMTS = ("BIN", "TXT", "NPY")
WRITERS = {"BIN": save_bin, "TXT": save_txt, "NPY": save_npy}
DEFAULT_BATCH = 256  # the original system's batch
CV_WARNING = 0.05  # warn when the run-to-run coefficient of variation is above 5 %
SAMPLE_SUFFIXES = (".bin", ".npy")
SUMMARY_SCHEMA = "bigbigan-infer-summary"
SCHEMA_VERSION = 1


# ---- inputs ----


@dataclass
class SampleFile:
    """Folder inputs: one file per model input that together hold `count` samples, starting at
    sample `start` of the run, and the output files they produced."""

    inputs: dict[str, Path]
    start: int
    count: int
    outputs: dict[str, Path] = field(default_factory=dict)


@dataclass
class InputSet:
    """What `--input` resolved to."""

    source: str  # "files", "folder" or "synthetic"
    batches: list[dict[str, np.ndarray]]  # one feed per model call, in order
    real: list[int]  # samples in each batch that are not padding
    files: dict[str, list[Path]] = field(default_factory=dict)  # input name -> files read
    groups: list[SampleFile] = field(default_factory=list)  # folder inputs only
    seed: int | None = None  # synthetic inputs only
    padded: int = 0  # samples added to fill the last batch of a static-batch model

    @property
    def samples(self) -> int:
        return sum(self.real)

    @property
    def batch(self) -> int:
        return next(iter(self.batches[0].values())).shape[0] if self.batches[0] else 1


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
        from bigbigan.training import checkpoint

        return checkpoint.read(path).model.num_classes
    path = resolve_model(path)  # a TensorFlow .pb: its import's sidecar
    sidecar = path.with_name(path.name + ".json")
    try:
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    model = meta.get("model") if isinstance(meta, dict) else None
    return model.get("num_classes") if isinstance(model, dict) else None


def load_input(path: str | Path, spec: TensorSpec, batch: int | None = None) -> np.ndarray:
    """One input file: `.npy` (no pickles) or raw `.bin`; checked against the model's input."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        return load_bin(path, spec, batch=batch)
    array = load_npy(path)
    if array.dtype != spec.np_dtype:
        raise dtype_mismatch(str(path), array.dtype, spec)
    if array.ndim == len(spec.shape) - 1:  # one sample without its batch dim
        array = array[None]
    if array.ndim != len(spec.shape) or any(
        want is not None and got != want
        for got, want in zip(array.shape[1:], spec.shape[1:], strict=True)
    ):
        want = "[" + ", ".join("*" if d is None else str(d) for d in spec.shape) + "]"
        raise BigBiGANError(f"{path}: shape {list(array.shape)}, {spec.model_name} expects {want}")
    static = spec.shape[0] if spec.shape else None
    if static is not None and array.shape[0] != static:
        raise BigBiGANError(
            f"{path}: holds a batch of {array.shape[0]}, {spec.model_name} has static batch "
            f"{static}"
        )
    if batch is not None and array.shape[0] != batch:
        raise BigBiGANError(f"{path}: holds a batch of {array.shape[0]}, expected batch {batch}")
    return np.ascontiguousarray(array)


def read_inputs(
    files: Sequence[str | Path], specs: list[TensorSpec], num_classes: int | None
) -> dict[str, np.ndarray]:
    """Load one file per model input, in order, and check sizes, dtypes and values."""
    if len(files) != len(specs):
        names = ", ".join(s.name for s in specs)
        raise BigBiGANError(
            f"--input: {len(files)} file(s) given, the model has {len(specs)} input(s) ({names})"
        )
    feed = {}
    for path, spec in zip(files, specs, strict=True):
        array = load_input(path, spec)
        validate_values(path, array, spec, num_classes)
        feed[spec.name] = array
    return feed


def assign_inputs(items: Sequence[str | Path], specs: list[TensorSpec]) -> dict[str, Path]:
    """`--input` entries -> {input name: path}: all by position, or all as `name:path`."""
    names = [s.name for s in specs]
    named: dict[str, Path] = {}
    positional: list[Path] = []
    for item in items:
        text = str(item)
        name, sep, rest = text.partition(":")
        if sep and name in names and rest:
            if name in named:
                raise BigBiGANError(f"--input: input {name} is given twice")
            named[name] = Path(rest)
        else:
            positional.append(Path(text))
    if named and positional:
        raise BigBiGANError(
            f"--input: give every input as name:file or none ({', '.join(map(str, positional))} "
            f"has no name; the model's inputs are {', '.join(names)})"
        )
    if named:
        missing = [n for n in names if n not in named]
        if missing:
            raise BigBiGANError(
                f"--input: no file for input {', '.join(missing)} (the model's inputs are "
                f"{', '.join(names)})"
            )
        return {n: named[n] for n in names}
    if len(positional) != len(specs):
        raise BigBiGANError(
            f"--input: {len(positional)} file(s) given, the model has {len(specs)} input(s) "
            f"({', '.join(names)})"
        )
    return dict(zip(names, positional, strict=True))


def _expand(items: Sequence[str | Path], specs: list[TensorSpec]) -> list[str | Path]:
    """A make-inputs directory stands for its files; a folder with one sub-folder per input
    name stands for those sub-folders."""
    from bigbigan.inputs import IMAGE_FILE, LABEL_FILE, NOISE_FILE, input_files

    if len(items) != 1 or (":" in str(items[0]) and not Path(items[0]).exists()):
        return list(items)
    path = Path(items[0])
    if not path.is_dir():
        return list(items)
    if any((path / f).is_file() for f in (NOISE_FILE, LABEL_FILE, IMAGE_FILE)):
        return list(input_files(path))
    subdirs = [path / s.name for s in specs]
    if len(specs) > 1 and all(d.is_dir() for d in subdirs):
        return subdirs
    return list(items)


def sample_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)
    if not files:
        raise BigBiGANError(f"--input {folder}: no .bin or .npy files in it")
    return files


def resolve_inputs(
    items: Sequence[str | Path] | None,
    specs: list[TensorSpec],
    *,
    num_classes: int | None,
    batch: int | None = None,
    seed: int = 0,
) -> InputSet:
    """Turn `--input` (or its absence) into the batches to run; see the module docstring."""
    static = next((s.shape[0] for s in specs if s.shape and s.shape[0] is not None), None)
    if batch is not None and static is not None and batch != static:
        raise BigBiGANError(f"--batch {batch}: the model has static batch {static}")
    if not items:
        from bigbigan.export import random_feed

        n = static or batch or DEFAULT_BATCH
        feed = random_feed(specs, n, num_classes=num_classes, seed=seed)
        return InputSet("synthetic", [feed], [n], seed=seed)
    assigned = assign_inputs(_expand(items, specs), specs)
    dirs = [p for p in assigned.values() if p.is_dir()]
    if not dirs:
        feed = {}
        for spec in specs:
            path = assigned[spec.name]
            feed[spec.name] = load_input(path, spec, batch)
            validate_values(path, feed[spec.name], spec, num_classes)
        check_feed(feed, specs, source="--input")
        files = {name: [path] for name, path in assigned.items()}
        return InputSet("files", [feed], [next(iter(feed.values())).shape[0]], files)
    if len(dirs) != len(assigned):
        raise BigBiGANError("--input: give either files or folders, not a mix")
    return _folder_inputs(assigned, specs, num_classes, batch or static or DEFAULT_BATCH, static)


def _folder_inputs(
    folders: dict[str, Path],
    specs: list[TensorSpec],
    num_classes: int | None,
    batch: int,
    static: int | None,
) -> InputSet:
    """Per-sample files, matched across inputs by sorted position, then cut into batches."""
    listing = {name: sample_files(folder) for name, folder in folders.items()}
    counts = {name: len(files) for name, files in listing.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{folders[n]}: {c}" for n, c in counts.items())
        raise BigBiGANError(f"--input: the folders hold different numbers of files ({detail})")
    dynamic = [TensorSpec(s.name, s.dtype, (None, *s.shape[1:])) for s in specs]
    columns: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    groups: list[SampleFile] = []
    start = 0
    for index in range(next(iter(counts.values()))):
        paths = {s.name: listing[s.name][index] for s in specs}
        arrays = {}
        for spec in dynamic:
            array = load_input(paths[spec.name], spec)
            validate_values(paths[spec.name], array, spec, num_classes)
            arrays[spec.name] = array
        sizes = {a.shape[0] for a in arrays.values()}
        if len(sizes) > 1:
            detail = ", ".join(f"{paths[n]}: {a.shape[0]}" for n, a in arrays.items())
            raise BigBiGANError(f"--input: files hold different numbers of samples ({detail})")
        for name, array in arrays.items():
            columns[name].append(array)
        groups.append(SampleFile(paths, start, sizes.pop()))
        start += groups[-1].count
    stems = [next(iter(g.inputs.values())).stem for g in groups]
    if len(set(stems)) != len(stems):
        raise BigBiGANError("--input: two sample files share a name; outputs would collide")
    data = {name: np.concatenate(arrays) for name, arrays in columns.items()}
    batches, real, padded = [], [], 0
    for lo in range(0, start, batch):
        chunk = {name: a[lo : lo + batch] for name, a in data.items()}
        n = next(iter(chunk.values())).shape[0]
        if static is not None and n < static:  # pad with copies of the last sample
            padded += static - n
            chunk = {
                name: np.concatenate([a, np.repeat(a[-1:], static - n, axis=0)])
                for name, a in chunk.items()
            }
        batches.append({name: np.ascontiguousarray(a) for name, a in chunk.items()})
        real.append(n)
    return InputSet("folder", batches, real, dict(listing), groups, padded=padded)


# ---- running and timing ----


@dataclass
class Timing:
    runs_ms: list[float]  # every timed call
    phases_ms: dict[str, list[float]] | None  # h2d / compute / d2h per call, where split


def staged_call(runner: Runner, force: bool = False) -> Callable | None:
    """For the torch and aoti runners on a CUDA device: one call split into host->device,
    compute and device->host, with a synchronise before each clock read. None where a backend
    cannot split (onnxruntime, tensorrt) or on the CPU, where there is no transfer to time
    (`force` builds it anyway, for testing on a CPU).

    It reaches the runner's loaded callable (`_module` / `_model`), as the Runner interface
    exposes only the whole call; the feed must already be checked (`check_feed`).
    """
    if not (runner.device.startswith("cuda") or force):
        return None
    fn = {"torch": "_module", "aoti": "_model"}.get(runner.name)
    target = getattr(runner, fn, None) if fn else None
    if target is None:
        return None
    import torch

    def sync() -> None:
        if runner.device.startswith("cuda"):
            torch.cuda.synchronize(runner.device)

    def call(feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[float]]:
        sync()
        t0 = time.perf_counter()
        args = [torch.from_numpy(feed[s.name]).to(runner.device) for s in runner.inputs]
        sync()
        t1 = time.perf_counter()
        with torch.inference_mode():
            out = target(*args)
        sync()
        t2 = time.perf_counter()
        values = list(out) if isinstance(out, list | tuple) else [out]
        host = {s.name: v.cpu().numpy() for s, v in zip(runner.outputs, values, strict=True)}
        sync()
        t3 = time.perf_counter()
        return host, [(t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3]

    return call


def run_timed(
    runner: Runner,
    batches: list[dict[str, np.ndarray]],
    *,
    warmup: int = 0,
    loop: int | None = 1,
    duration: float | None = None,
    split: Callable | None = None,
) -> tuple[Timing, list[dict[str, np.ndarray]]]:
    """`warmup` untimed calls, then `loop` passes over `batches` (or passes until `duration`
    seconds have been spent in timed calls, at least one). Returns the timing and the outputs of
    the last pass, one dict per batch."""
    for i in range(warmup):
        runner.infer(batches[i % len(batches)])
    runs: list[float] = []
    phases: dict[str, list[float]] | None = {"h2d": [], "compute": [], "d2h": []} if split else None
    outputs: list[dict[str, np.ndarray]] = []
    passes = 0
    while True:
        outputs = []
        for feed in batches:
            if split is not None and phases is not None:
                out, parts = split(feed)
                for key, ms in zip(phases, parts, strict=True):
                    phases[key].append(ms)
                runs.append(sum(parts))
            else:
                runner.synchronize()
                start = time.perf_counter()
                out = runner.infer(feed)
                runner.synchronize()
                runs.append((time.perf_counter() - start) * 1e3)
            outputs.append(out)
        passes += 1
        if duration is not None:
            if sum(runs) >= duration * 1e3:
                break
        elif passes >= (loop or 1):
            break
    return Timing(runs, phases), outputs


def time_loops(runner: Runner, feed: dict[str, np.ndarray], loop: int) -> tuple[list, dict]:
    """Run `loop` times; return the per-loop milliseconds and the last outputs."""
    timing, outputs = run_timed(runner, [feed], loop=loop)
    return timing.runs_ms, outputs[-1]


# ---- machine and memory ----


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name(device: str) -> str | None:
    """The GPU `device` names (via torch), else the first NVIDIA GPU the driver lists, else None."""
    if device.startswith("cuda"):
        try:
            import torch

            from bigbigan.runtimes.base import cuda_index

            return torch.cuda.get_device_name(cuda_index(device))
        except Exception:  # no CUDA build, no driver: fall back to the driver's files
            pass
    root = Path("/proc/driver/nvidia/gpus")
    try:
        for info in sorted(root.glob("*/information")):
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info(device: str) -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "usable_cores": usable,
        "gpu": gpu_name(device),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


# ---- the result and its summary ----


@dataclass
class InferResult:
    model: Path
    backend: str
    outputs: list[Path]  # every file written
    loop_ms: list[float]  # every timed call, milliseconds
    batch: int
    load_seconds: float
    arrays: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    warmup: int = 0
    images_per_call: float = 0.0  # real (unpadded) samples per timed call, on average
    phases_ms: dict[str, list[float]] | None = None
    peak_rss_mb: float = 0.0
    summary_doc: dict[str, Any] = field(repr=False, default_factory=dict)
    summary_paths: list[Path] = field(default_factory=list)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.loop_ms)

    @property
    def mean_ms_without_first(self) -> float:
        return statistics.fmean(self.loop_ms[1:] or self.loop_ms)

    @property
    def latency(self) -> dict[str, float]:
        return latency_stats(self.loop_ms)

    @property
    def images_per_s(self) -> float:
        """Real samples per call over the median call time (robust to a slow first call)."""
        return (self.images_per_call or self.batch) / (self.latency["median"] / 1e3)

    @property
    def spread_warning(self) -> bool:
        return len(self.loop_ms) > 1 and self.latency["cv"] > CV_WARNING

    def summary(self) -> dict[str, Any]:
        return self.summary_doc


# The summary's schema: every required key, with its type(s); "list" and "dict" hold anything.
_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_LATENCY = {key: _NUM for key in ("min", "max", "mean", "median", "p90", "p95", "p99", "std", "cv")}
SUMMARY_FIELDS: dict[str, Any] = {
    "schema": str,
    "schema_version": int,
    "created_utc": str,
    "arguments": {
        "model": str,
        "backend": (str, type(None)),
        "device": str,
        "threads": (int, type(None)),
        "streams": int,
        "micro_batch": int,
        "input": (list, type(None)),
        "batch": (int, type(None)),
        "seed": int,
        "warmup": int,
        "loop": (int, type(None)),
        "duration_s": _OPT_NUM,
        "outfmt": str,
        "output_dir": (str, type(None)),
    },
    "machine": {
        "cpu": str,
        "cores": int,
        "usable_cores": int,
        "gpu": (str, type(None)),
        "os": str,
        "python": str,
    },
    "backend": {
        "name": str,
        "version": str,
        "device": str,
        "threads": (int, type(None)),
        "streams": int,
    },
    "model": {"path": str, "inputs": list, "outputs": list, "load_s": _NUM},
    "inputs": {
        "source": str,
        "files": dict,
        "samples": int,
        "batch": int,
        "batches": int,
        "padded": int,
        "seed": (int, type(None)),
    },
    "outputs": {"files": list, "arrays": list},
    "mapping": list,
    "timing": {
        "warmup": int,
        "runs": int,
        "batch": int,
        "images_per_run": _NUM,
        "latency_ms": _LATENCY,
        "images_per_s": _NUM,
        "mean_ms": _NUM,
        "mean_ms_without_first": _NUM,
        "phases_ms": (dict, type(None)),
        "phases_note": str,
        "load_s": _NUM,
        "peak_rss_mb": _NUM,
        "spread_warning": bool,
    },
    "runs_ms": list,
    "phases_runs_ms": (dict, type(None)),
}


def validate_summary(doc: Any, fields: dict[str, Any] = SUMMARY_FIELDS, where: str = "") -> None:
    """Check `doc` against the summary schema: every key present with an allowed type; the
    first problem is a one-line BigBiGANError naming the key."""
    if not isinstance(doc, dict):
        raise BigBiGANError(f"summary{where}: expected an object, found {type(doc).__name__}")
    if not where and (doc.get("schema"), doc.get("schema_version")) != (
        SUMMARY_SCHEMA,
        SCHEMA_VERSION,
    ):
        raise BigBiGANError(
            f"summary: schema {doc.get('schema')!r} version {doc.get('schema_version')!r}, "
            f"expected {SUMMARY_SCHEMA!r} version {SCHEMA_VERSION}"
        )
    for key, kind in fields.items():
        path = f"{where}.{key}"
        if key not in doc:
            raise BigBiGANError(f"summary: missing {path[1:]}")
        value = doc[key]
        if isinstance(kind, dict):
            validate_summary(value, kind, path)
            continue
        kinds = kind if isinstance(kind, tuple) else (kind,)
        is_bool = isinstance(value, bool)
        if not isinstance(value, kinds) or (is_bool and bool not in kinds):
            names = "/".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise BigBiGANError(
                f"summary: {path[1:]} must be {names}, found {type(value).__name__}"
            )
    if not where:
        if not all(isinstance(t, _NUM) and not isinstance(t, bool) for t in doc["runs_ms"]):
            raise BigBiGANError("summary: runs_ms must be a list of numbers")
        if len(doc["runs_ms"]) != doc["timing"]["runs"]:
            raise BigBiGANError("summary: runs_ms does not hold timing.runs entries")


def build_summary(
    result: InferResult,
    inputs: InputSet,
    runner: Runner,
    arguments: dict[str, Any],
    written: dict[str, Path],
) -> dict[str, Any]:
    lat = result.latency
    phases = None
    if result.phases_ms:
        phases = {k: latency_stats(v) for k, v in result.phases_ms.items()}
    if phases:
        note = "host->device, compute, device->host, each closed by a device synchronise"
    elif runner.device == "cpu":
        note = "not applicable on the CPU (no transfers): the run time is all compute"
    else:
        note = f"the {runner.name} backend cannot split a call; only the whole call is timed"
    return {
        "schema": SUMMARY_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "arguments": arguments,
        "machine": machine_info(runner.device),
        "backend": {
            "name": runner.name,
            "version": runner.version(),
            "device": runner.device,
            "threads": runner.threads,
            "streams": runner.streams,
        },
        "model": {
            "path": str(result.model),
            "inputs": specs_to_json(runner.inputs),
            "outputs": specs_to_json(runner.outputs),
            "load_s": round(result.load_seconds, 6),
        },
        "inputs": {
            "source": inputs.source,
            "files": {name: [str(p) for p in paths] for name, paths in inputs.files.items()},
            "samples": inputs.samples,
            "batch": inputs.batch,
            "batches": len(inputs.batches),
            "padded": inputs.padded,
            "seed": inputs.seed,
        },
        "outputs": {
            "files": [str(p) for p in result.outputs],
            "arrays": [
                {
                    "name": name,
                    "dtype": array.dtype.name,
                    "shape": list(array.shape),
                    "path": str(written[name]) if name in written else None,
                }
                for name, array in result.arrays.items()
            ],
        },
        "mapping": [
            {
                "inputs": {name: str(p) for name, p in g.inputs.items()},
                "first_sample": g.start,
                "samples": g.count,
                "outputs": {name: str(p) for name, p in g.outputs.items()},
            }
            for g in inputs.groups
        ],
        "timing": {
            "warmup": result.warmup,
            "runs": len(result.loop_ms),
            "batch": result.batch,
            "images_per_run": result.images_per_call,
            "latency_ms": {k: round(v, 6) for k, v in lat.items()},
            "images_per_s": round(result.images_per_s, 3),
            "mean_ms": round(result.mean_ms, 6),
            "mean_ms_without_first": round(result.mean_ms_without_first, 6),
            "phases_ms": phases,
            "phases_note": note,
            "load_s": round(result.load_seconds, 6),
            "peak_rss_mb": round(result.peak_rss_mb, 1),
            "spread_warning": result.spread_warning,
        },
        "runs_ms": [round(t, 6) for t in result.loop_ms],
        "phases_runs_ms": result.phases_ms,
    }


# ---- the stage ----


def write_outputs(
    outputs: dict[str, np.ndarray], out_dir: Path, stem: str, outfmt: str
) -> list[Path]:
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
    """Run `model` on `inputs` (see the module docstring) and write its outputs and summary
    into `output_dir` (None: write no outputs) and, given, the summary to `summary` too.

    `loop` timed passes (default 1) or, instead, passes until `duration` seconds are spent;
    `warmup` untimed calls first; `batch` for synthetic or folder inputs (default: the model's
    static batch, else 256). `streams` > 1 splits each batch across that many copies of the
    model, `threads` each (throughput mode, CPU; see bigbigan.runtimes.streams); `micro_batch`
    > 0 runs larger batches in slices of that many samples (Runner.micro_batch).
    """
    outfmt = outfmt.upper()
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
    model = Path(model)
    out_dir = ensure_dir(output_dir, flag="--output") if output_dir is not None else None
    if summary is not None and Path(summary).is_dir():
        raise BigBiGANError(f"--summary {summary}: is a directory, expected a .json file name")
    arguments = {
        "model": str(model),
        "backend": backend,
        "device": device,
        "threads": threads,
        "streams": streams,
        "micro_batch": micro_batch,
        "input": [str(i) for i in inputs] if inputs else None,
        "batch": batch,
        "seed": seed,
        "warmup": warmup,
        "loop": loop if duration is None else None,
        "duration_s": duration,
        "outfmt": outfmt,
        "output_dir": str(out_dir) if out_dir else None,
    }
    if duration is None and loop is None:
        arguments["loop"] = loop = 1
    stem = model_stem(model)
    with open_runner(
        model,
        backend=backend,
        device=device,
        threads=threads,
        streams=streams,
        micro_batch=micro_batch,
        **options,
    ) as runner:
        if batch is not None:
            limits.check_batch("--batch", batch, limits.spec_bytes(runner.inputs + runner.outputs))
        data = resolve_inputs(
            inputs, runner.inputs, num_classes=model_num_classes(model), batch=batch, seed=seed
        )
        limits.check_split(streams, micro_batch, data.batch)
        for feed in data.batches:
            check_feed(feed, runner.inputs, source="--input")
        timing, outputs = run_timed(
            runner,
            data.batches,
            warmup=warmup,
            loop=loop,
            duration=duration,
            split=None if micro_batch else staged_call(runner),  # a split call is whole
        )
        arrays = _gather(outputs, data.real)
        written: dict[str, Path] = {}
        paths: list[Path] = []
        if out_dir is not None and data.source == "folder":
            for group in data.groups:
                piece = {k: v[group.start : group.start + group.count] for k, v in arrays.items()}
                stem_i = next(iter(group.inputs.values())).stem
                files = write_outputs(piece, out_dir, stem_i, outfmt)
                group.outputs = dict(zip(piece, files, strict=True))
                paths += files
        elif out_dir is not None:
            paths = write_outputs(arrays, out_dir, stem, outfmt)
            written = dict(zip(arrays, paths, strict=True))
        n_runs = len(timing.runs_ms)
        per_pass = len(data.batches)
        real_per_call = sum(data.real[i % per_pass] for i in range(n_runs)) / n_runs
        result = InferResult(
            model,
            ", ".join(
                [runner.name]
                + ([f"{streams} streams"] if streams > 1 else [])
                + ([f"micro-batch {micro_batch}"] if micro_batch else [])
            ),
            paths,
            timing.runs_ms,
            data.batch,
            runner.load_seconds or 0.0,
            arrays,
            warmup=warmup,
            images_per_call=real_per_call,
            phases_ms=timing.phases_ms,
            peak_rss_mb=peak_rss_mb(),
        )
        result.summary_doc = build_summary(result, data, runner, arguments, written)
    validate_summary(result.summary_doc)
    text = json.dumps(result.summary_doc, indent=2) + "\n"
    if out_dir is not None:
        result.summary_paths.append(out_dir / f"{stem}_summary.json")
    if summary is not None:
        result.summary_paths.append(Path(summary))
    for path in result.summary_paths:
        write_text(path, text)
    return result


def format_summary(result: InferResult, max_lines: int = 20) -> str:
    """The lines msame prints (per-loop times, average with and without the first), then the
    latency distribution, throughput, phases, load time and memory."""
    lat = result.latency
    runs = len(result.loop_ms)
    warm = f" (+{result.warmup} warm-up)" if result.warmup else ""
    lines = [f"[{result.backend}] {result.model}: batch {result.batch}, loop {runs}{warm}"]
    shown = result.loop_ms if runs <= max_lines else result.loop_ms[: max_lines // 2]
    lines += [f"  loop {i + 1}: {t:.3f} ms" for i, t in enumerate(shown)]
    if runs > len(shown):
        lines.append(f"  ... {runs - len(shown)} more in the summary's runs_ms")
    lines += [
        f"  Inference average time: {result.mean_ms:.3f} ms",
        f"  Inference average time without first time: {result.mean_ms_without_first:.3f} ms",
        "  latency ms: "
        + "  ".join(f"{k} {lat[k]:.3f}" for k in ("min", "median", "p90", "p95", "p99", "max"))
        + f"  (mean {lat['mean']:.3f}, cv {lat['cv']:.1%})",
        f"  throughput: {result.images_per_s:.1f} images/s",
    ]
    if result.phases_ms:
        parts = {k: statistics.median(v) for k, v in result.phases_ms.items()}
        lines.append(
            f"  median host->device {parts['h2d']:.3f} ms, compute {parts['compute']:.3f} ms, "
            f"device->host {parts['d2h']:.3f} ms"
        )
    lines.append(
        f"  model load: {result.load_seconds:.2f} s, peak memory: {result.peak_rss_mb:.0f} MB"
    )
    outputs = result.outputs if len(result.outputs) <= max_lines else result.outputs[:max_lines]
    lines += [f"  output: {p}" for p in outputs]
    if len(result.outputs) > len(outputs):
        lines.append(f"  ... {len(result.outputs) - len(outputs)} more outputs (see the summary)")
    lines += [f"  summary: {p}" for p in result.summary_paths]
    return "\n".join(lines)


def spread_warning(result: InferResult) -> str | None:
    """The warning the CLI prints when timings are too noisy to trust."""
    if not result.spread_warning:
        return None
    lat = result.latency
    return (
        f"warning: run-to-run spread is large (coefficient of variation {lat['cv']:.1%} > "
        f"{CV_WARNING:.0%}; min {lat['min']:.3f} ms, max {lat['max']:.3f} ms): other load on "
        "the machine, or too few --warmup runs; the median is the number to trust"
    )
