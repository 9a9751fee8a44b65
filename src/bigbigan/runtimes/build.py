"""What every compile builder shares: the job it is given, the report it returns, validation of
its artifact against the source ONNX, atomic staging, and the sidecar it writes.

Every artifact is run on one seeded feed beside the source ONNX in ONNX Runtime before it is
renamed into place; fp32 must match within `--tolerance` (max abs), reduced precision within
its own bounds (PRECISION_LIMITS), and its accuracy cost goes into the sidecar. The builders
themselves live with their backend (runtimes/<backend>.py) and are found through the registry.
Sidecars are documents (bigbigan.documents: the `format`/`version` header, written atomically);
those written before they carried a version still read, since their readers ask for none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.documents import document_text, sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import write_text
from bigbigan.interface import TensorSpec
from bigbigan.runtimes.base import Runner

SIDECAR_FORMAT = "bigbigan-compiled"
SIDECAR_VERSION = 1  # the first compiled sidecars had no version: version 1 reads them too

# Accuracy bounds of reduced precision vs the fp32 source ONNX, on pixels in [0, 1]:
# (mean abs diff, max abs diff). The mean is the accuracy cost that matters (the performance
# targets: bf16 and int8 <= 5e-3; int8 meets it by keeping its most sensitive layers in fp32,
# bigbigan.quantize); the max only guards against broken output, because a few pixels can move
# far where a saturated activation is rounded or clipped (measured on a partly trained ch=16
# model at batch 256: bf16 max 0.06, int8 max 0.58, means 1e-3 and 4e-3). A --tolerance above
# the max bound raises it.
PRECISION_LIMITS: dict[str, tuple[float, float]] = {
    "bf16": (5e-3, 0.25),
    "fp16": (2e-3, 0.1),
    "int8": (5e-3, 1.0),
}
REDUCED_VALIDATE_BATCH = 64  # reduced precision is judged on more samples than fp32's 4
CALIBRATION_SAMPLES = 512  # int8: generator inputs drawn from the training noise distribution
CALIBRATION_BATCH = 64
CALIBRATION_SEED = 1234  # not the validation seed (0): calibrate and validate on other samples


@dataclass
class CompileReport:
    target: str
    precision: str
    path: Path  # the artifact (for ascend without atc: the static ONNX)
    seconds: float  # build time, validation excluded
    command: str | None = None  # ascend: the atc command line
    note: str = ""  # what a user should know (hardware-specific, not run, ...)
    max_abs_diff: float | None = None  # vs the source ONNX in ONNX Runtime, same inputs
    sidecar: Path | None = None
    mean_abs_diff: float | None = None  # reduced precision: its accuracy cost


@dataclass(frozen=True)
class CompileJob:
    """Everything a builder needs, resolved and checked by `bigbigan.compile.compile_model`."""

    onnx_path: Path
    out: Path
    target: str
    precision: str
    device: str
    checkpoint: Path | None
    inputs: list[TensorSpec]  # the source ONNX's interface
    outputs: list[TensorSpec]
    max_batch: int  # the dynamic batch's upper bound (aoti, tensorrt)
    source_meta: dict[str, Any] = field(default_factory=dict)  # the ONNX's sidecar, if any
    batch: int | None = None
    soc_version: str = "Ascend310"
    ort_level: str = "all"
    tolerance: float = 1e-4
    inductor_configs: dict[str, Any] | None = None  # aoti: None = the precision's defaults
    rewrite: bool = True  # fp32 ort, aoti, openvino: the exact upsampling rewrites

    @property
    def num_classes(self) -> int | None:
        model = self.source_meta.get("model")
        return model.get("num_classes") if isinstance(model, dict) else None

    @property
    def dynamic(self) -> bool:
        return any(spec.shape and spec.shape[0] is None for spec in self.inputs)

    @property
    def reduced(self) -> bool:
        return self.precision != "fp32"


def reference(job: CompileJob, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The source ONNX's first output in ONNX Runtime (CPU, default optimisations)."""
    from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner

    with OnnxRuntimeRunner(job.onnx_path) as runner:
        return runner.infer(feed)[job.outputs[0].name]


def precision_limits(job: CompileJob) -> tuple[float | None, float]:
    """(mean, max) abs-diff bounds of `job`'s artifact vs its source: fp32 has only the max."""
    if not job.reduced:
        return None, job.tolerance
    mean_bound, max_bound = PRECISION_LIMITS[job.precision]
    return mean_bound, max(max_bound, job.tolerance)


def accuracy(
    job: CompileJob, runner_cls: type[Runner], path: Path, batch: int, **kw: Any
) -> tuple[float, float]:
    """(max, mean) abs diff of the artifact vs the source ONNX on one seeded feed, within the
    precision's bounds (`precision_limits`), else an error and nothing is written."""
    from bigbigan.interface import diff_stats, random_feed

    with runner_cls(path, device=job.device, **kw) as runner:
        feed = random_feed(runner.inputs, batch, num_classes=job.num_classes, seed=0)
        found = runner.infer(feed)[job.outputs[0].name]
    max_abs, mean_abs = diff_stats(found, reference(job, feed))
    mean_bound, max_bound = precision_limits(job)
    if mean_bound is None and not max_abs <= max_bound:  # also catches NaN
        raise BigBiGANError(
            f"{job.out}: {job.target} output differs from {job.onnx_path} by max {max_abs:.3g} "
            f"> --tolerance {max_bound:g} (mean {mean_abs:.3g}); nothing written"
        )
    if mean_bound is not None and not (max_abs <= max_bound and mean_abs <= mean_bound):
        raise BigBiGANError(
            f"{job.out}: {job.target} {job.precision} output differs from {job.onnx_path} by "
            f"mean {mean_abs:.3g}, max {max_abs:.3g}: beyond the {job.precision} bounds "
            f"(mean {mean_bound:g}, max {max_bound:g}); nothing written"
        )
    return max_abs, mean_abs


def validate(job: CompileJob, runner_cls: type[Runner], path: Path, batch: int, **kw: Any) -> float:
    """Run the artifact and the source ONNX on one seeded feed; max abs diff within tolerance."""
    return accuracy(job, runner_cls, path, batch, **kw)[0]


def calibration_feeds(
    specs: list[TensorSpec],
    num_classes: int | None,
    samples: int = CALIBRATION_SAMPLES,
    batch: int = CALIBRATION_BATCH,
    seed: int = CALIBRATION_SEED,
) -> list[dict[str, np.ndarray]]:
    """int8 calibration inputs: `samples` draws of the offline interface's inputs in batches,
    noise from the training distribution (truncated normal, |z| <= 2) and uniform labels (a
    static leading dim wins over `batch`)."""
    from bigbigan.interface import random_feed

    feeds, drawn = [], 0
    while drawn < samples:
        feed = random_feed(
            specs, min(batch, samples - drawn), num_classes=num_classes, seed=seed + len(feeds)
        )
        feeds.append(feed)
        drawn += next(iter(feed.values())).shape[0]
    return feeds


def compiled_meta(job: CompileJob, report: CompileReport, **extra: Any) -> dict[str, Any]:
    """The sidecar of a compiled artifact (its body: `write_sidecar` adds the header):
    provenance, interface, numbers."""
    src = job.source_meta
    return {
        "target": job.target,
        "precision": job.precision,
        "device": job.device,
        "source": str(job.onnx_path.resolve()),
        "checkpoint": str(job.checkpoint.resolve()) if job.checkpoint else src.get("checkpoint"),
        "role": src.get("role"),
        "model": src.get("model"),
        "seconds": round(report.seconds, 3),
        "max_abs_diff_vs_source": report.max_abs_diff,
        "note": report.note,
        **extra,
    }


def reduced_meta(job: CompileJob, report: CompileReport) -> dict[str, Any]:
    """Sidecar fields of a reduced-precision artifact: its accuracy cost and how it was made."""
    mean_bound, max_bound = precision_limits(job)
    meta: dict[str, Any] = {
        "accuracy": {
            "reference": "the fp32 source ONNX in ONNX Runtime",
            "batch": REDUCED_VALIDATE_BATCH,
            "seed": 0,
            "mean_abs_diff": report.mean_abs_diff,
            "max_abs_diff": report.max_abs_diff,
            "bounds": {"mean": mean_bound, "max": max_bound},
        }
    }
    if job.precision == "int8":
        meta["calibration"] = {
            "samples": CALIBRATION_SAMPLES,
            "batch": CALIBRATION_BATCH,
            "seed": CALIBRATION_SEED,
            "inputs": "truncated normal noise (|z| <= 2), uniform labels",
        }
    return meta


def write_sidecar(artifact: Path, meta: dict[str, Any], doc_format: str = SIDECAR_FORMAT) -> Path:
    """`meta` as the sidecar of `artifact` (`G.ort` -> `G.ort.json`) under the documents header,
    atomically; `doc_format` for a backend whose runner asks for its own (aoti). A builder
    writes it twice around validation, whose runner reads it (openvino, aoti): the second write
    replaces a file this command has read, on purpose (the staged artifact's own sidecar)."""
    path = sidecar_path(artifact)
    write_text(path, document_text(doc_format, meta, SIDECAR_VERSION), replaces_input=True)
    return path


@contextlib.contextmanager
def staged(out: Path, companions: Sequence[str] = ()) -> Iterator[Path]:
    """Yield `out`'s name inside a fresh temp dir beside it; if the block succeeds, move the
    staged companion files (`companions`: suffixes replacing out's, e.g. an IR's ".bin"), the
    sidecar (when written) and last the file itself into place. Tools that care about the file
    name (AOTInductor names the archive's root after it, ORT and atc go by suffix) see the real
    one, and a failure leaves nothing behind."""
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        path = tmpdir / out.name
        yield path
        for suffix in companions:
            os.replace(path.with_suffix(suffix), out.with_suffix(suffix))
        if sidecar_path(path).exists():
            os.replace(sidecar_path(path), sidecar_path(out))
        os.replace(path, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def rewrites_note(rewrites: dict[str, int]) -> str:
    return "".join(f"; {n}x {what}" for what, n in rewrites.items())


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
