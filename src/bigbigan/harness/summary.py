"""The infer summary: one JSON document of a fixed, versioned schema per run.

`build_summary` writes it from a run's `InferResult`, `validate_summary` checks a document
against `SUMMARY_FIELDS` (every key present with an allowed type; new keys may be added within a
version), `read_summary` reads one back, old header included, and `format_summary` is the text
the CLI prints (msame's lines first). The schema is documented key by key in
docs/infer_compare.md.
"""

from __future__ import annotations

import datetime
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.documents import document, normalise_header, read_document
from bigbigan.errors import BigBiGANError
from bigbigan.harness.inputs import InputSet
from bigbigan.harness.machine import machine_info
from bigbigan.harness.timing import CV_WARNING, latency_stats
from bigbigan.interface import specs_to_json
from bigbigan.runtimes.base import Runner

SUMMARY_FORMAT = "bigbigan-infer-summary"
SUMMARY_VERSION = 1


@dataclass
class InferResult:
    """One infer run: what ran, what it wrote, every timed call; its summary document."""

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
# Required latency keys: those of version 1's first files (LATENCY_KEYS adds p10, p25, p75, iqr).
_LATENCY = {key: _NUM for key in ("min", "max", "mean", "median", "p90", "p95", "p99", "std", "cv")}
SUMMARY_FIELDS: dict[str, Any] = {
    "format": str,
    "version": int,
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
    if not where:
        doc = normalise_header(dict(doc))  # the first summaries said schema/schema_version
        if (doc.get("format"), doc.get("version")) != (SUMMARY_FORMAT, SUMMARY_VERSION):
            raise BigBiGANError(
                f"summary: format {doc.get('format')!r} version {doc.get('version')!r}, "
                f"expected {SUMMARY_FORMAT!r} version {SUMMARY_VERSION}"
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


def read_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A summary file, checked against the schema; one written with the first header
    (`schema`/`schema_version`) reads the same."""
    doc = read_document(path, SUMMARY_FORMAT, (SUMMARY_VERSION,))
    try:
        validate_summary(doc)
    except BigBiGANError as err:
        raise BigBiGANError(f"{path}: {err}") from err
    return doc


def build_summary(
    result: InferResult,
    inputs: InputSet,
    runner: Runner,
    arguments: dict[str, Any],
    written: dict[str, Path],
) -> dict[str, Any]:
    """The summary document of one infer run, header included (`document`); it reads top to
    bottom like the schema it fills (the timing section: `_timing`)."""
    body = {
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
        "timing": _timing(result, runner),
        "runs_ms": [round(t, 6) for t in result.loop_ms],
        "phases_runs_ms": result.phases_ms,
    }
    return document(SUMMARY_FORMAT, body, SUMMARY_VERSION)


def _timing(result: InferResult, runner: Runner) -> dict[str, Any]:
    """The summary's `timing` section: the latency distribution, throughput, the GPU phases
    (or why there are none), load time and memory."""
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
        "warmup": result.warmup,
        "runs": len(result.loop_ms),
        "batch": result.batch,
        "images_per_run": result.images_per_call,
        "latency_ms": {k: round(v, 6) for k, v in result.latency.items()},
        "images_per_s": round(result.images_per_s, 3),
        "mean_ms": round(result.mean_ms, 6),
        "mean_ms_without_first": round(result.mean_ms_without_first, 6),
        "phases_ms": phases,
        "phases_note": note,
        "load_s": round(result.load_seconds, 6),
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "spread_warning": result.spread_warning,
    }


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
