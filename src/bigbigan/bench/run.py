"""`bench` itself: the rows opened (each an `open_runner` call on the checkpoint, the export or
an artifact `compile_model` builds once), timed per batch size by the harness's loop
(`time_calls`, the one `infer` uses) on one seeded feed, compared with PyTorch fp32 on it, and
their speed divided by the reference row's."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.autotune import DEFAULT_MAX_MEAN_DIFF
from bigbigan.bench.model import (
    LABEL_SAMPLES,
    Infer,
    classifier_for,
    generated_label_accuracy,
    model_under_test,
)
from bigbigan.bench.report import BenchResult, Row, auto_choice
from bigbigan.bench.settings import (
    BATCH_SIZES,
    DEFAULT_MICRO_BATCH,
    DEFAULT_STREAMS,
    PRECISIONS,
    check_settings,
)
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir
from bigbigan.harness.machine import machine_info
from bigbigan.harness.timing import latency_stats, time_calls
from bigbigan.runtimes import registry
from bigbigan.runtimes.base import Runner
from bigbigan.runtimes.registry import BenchRow, BenchSettings

# The row every ratio divides by (backend, precision, variant).
REFERENCE = ("onnxruntime", "fp32", "")
ACCURACY_REFERENCE = ("torch", "fp32", "")

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, matched in order against the CUDA
# device name: the first entry found in it wins ("H100 PCIe" before "H100", "L40S" before "L4").
GPU_BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM (HBM3)
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("4090", 165.0),
)

Log = Callable[[str], None]


def bench(
    checkpoint: str | Path | None,
    *,
    ch: int = 64,
    dataset: str = "fashion_mnist",
    batch_sizes: Sequence[int] = BATCH_SIZES,
    repeats: int = 10,
    warmup: int = 2,
    device: str = "cpu",
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] = PRECISIONS,
    threads: int | None = None,
    micro_batch: int = DEFAULT_MICRO_BATCH,
    streams: int = DEFAULT_STREAMS,
    out: str | Path = "out/bench",
    classifier: str | Path | None = None,
    label_samples: int = LABEL_SAMPLES,
    max_mean_diff: float | None = None,
    log: Log | None = None,
) -> BenchResult:
    """Benchmark every available backend and precision on one generator; see the package
    docstring. `backends` None: every registered one (`registry.bench_backends()`).
    `checkpoint` None: random weights at width `ch` (seeded). `classifier`: the evaluation
    classifier directory for label accuracy (default: the shipped one for the checkpoint's
    dataset, when there is one). `max_mean_diff`: the accuracy bound of the automatic choice
    (`auto_choice`, as `compile --target auto --max-mean-diff`; None: autotune's default)."""
    from bigbigan.export import export_onnx

    log = log or (lambda _msg: None)
    max_mean_diff = DEFAULT_MAX_MEAN_DIFF if max_mean_diff is None else max_mean_diff
    backends = registry.bench_backends() if backends is None else tuple(backends)
    check_settings(
        backends, precisions, device, repeats, warmup, micro_batch, streams, threads, max_mean_diff
    )
    _prepare_torch(device, threads)
    out = ensure_dir(out)
    work = ensure_dir(out / "artifacts")
    checkpoint, source, ckpt = model_under_test(checkpoint, ch, dataset, work, log)
    log("exporting ONNX ...")
    onnx_path = export_onnx(checkpoint, work / "G.onnx").path
    skipped: list[dict[str, str]] = []
    settings = BenchSettings(device, tuple(precisions), streams, micro_batch)
    opened = open_rows(
        registry.plan_rows(backends, settings),
        checkpoint=checkpoint,
        onnx_path=onnx_path,
        work=work,
        device=device,
        threads=threads,
        skipped=skipped,
        log=log,
    )
    classifier_dir = classifier_for(classifier, ckpt)
    try:
        accuracies = _label_accuracies(opened, classifier_dir, ckpt.model, label_samples, log)
        rows = _time_rows(opened, ckpt.model, batch_sizes, warmup, repeats, accuracies, device, log)
    finally:
        for _, runner in opened:
            runner.close()
    meta = _meta(ckpt.model, source, device, batch_sizes, repeats, warmup, threads)
    meta |= {"micro_batch": micro_batch, "streams": streams, "max_mean_diff": max_mean_diff}
    meta["ratio_reference"] = " ".join(x for x in set_ratios(rows) if x)
    meta["classifier"] = str(classifier_dir) if classifier_dir else None
    if device.startswith("cuda"):
        meta["gpu_bf16_peak_tflops"] = _set_peak_fractions(rows, device, meta["gflop_per_image"])
    auto = [] if device.startswith("cuda") else auto_choice(rows, max_mean_diff)  # CPU-only
    return BenchResult(rows, skipped, meta, auto).write(out)


def _prepare_torch(device: str, threads: int | None) -> None:
    """The device checked, torch's threads set, and on a GPU fp32 that means fp32 (no TF32,
    as in compile)."""
    import torch

    from bigbigan.runtimes.base import require_cuda

    require_cuda(device, "bench")
    if threads is not None:
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def _meta(
    cfg: Any,
    source: str,
    device: str,
    batch_sizes: Sequence[int],
    repeats: int,
    warmup: int,
    threads: int | None,
) -> dict[str, Any]:
    """The JSON's top level: the run's machine, model and settings."""
    from bigbigan.model.networks import generator_flops

    return {
        "device": device,
        "machine": machine_info(device, libraries=True),
        "model": asdict(cfg),
        "checkpoint": source,
        "gflop_per_image": generator_flops(cfg) / 1e9,
        "batch_sizes": list(batch_sizes),
        "repeats": repeats,
        "warmup": warmup,
        "threads": threads,
        "accuracy_reference": " ".join(x for x in ACCURACY_REFERENCE if x),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def row_latency(ms: Sequence[float]) -> dict[str, float]:
    """A row's latency fields from its timed calls (milliseconds): median, p10, p90, IQR."""
    stats = latency_stats(ms)
    return {
        "latency_ms": stats["median"],
        "p10_ms": stats["p10"],
        "p90_ms": stats["p90"],
        "iqr_ms": stats["iqr"],
    }


def gpu_bf16_peak(name: str) -> float | None:
    """Dense bf16 peak of a GPU in FLOP/s, from its name (None when not in the table)."""
    for key, tflops in GPU_BF16_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tflops * 1e12
    return None


def _set_peak_fractions(rows: Sequence[Row], device: str, gflop_per_image: float) -> float | None:
    """Each row's achieved FLOP/s over the GPU's dense bf16 peak; returns the peak in TFLOP/s
    (None for a GPU not in the table)."""
    import torch

    peak = gpu_bf16_peak(torch.cuda.get_device_name(device))
    if not peak:
        return None
    for row in rows:
        row.peak_fraction = row.images_per_s * gflop_per_image * 1e9 / peak
    return peak / 1e12


def open_rows(
    rows: Sequence[BenchRow],
    *,
    checkpoint: Path,
    onnx_path: Path,
    work: Path,
    device: str,
    threads: int | None,
    skipped: list[dict[str, str]],
    log: Log,
) -> list[tuple[BenchRow, Runner]]:
    """Each row's runner, loaded: its model is the checkpoint, the export, or an artifact that
    `compile_model` builds once into `work`. What cannot be built or opened here (a missing
    package, no GPU, ...) is skipped with its reason, never fatal. A row split across streams
    runs one thread a copy; every other row gets `threads`."""
    from bigbigan.runtimes import open_runner

    models: dict[tuple[str, str, str], Path | None] = {}
    opened: list[tuple[BenchRow, Runner]] = []
    for row in rows:
        if row.model in ("checkpoint", "onnx"):
            path = checkpoint if row.model == "checkpoint" else onnx_path
        else:
            key = (row.model, row.precision, row.artifact)
            if key not in models:
                models[key] = _build(row, onnx_path, checkpoint, work, device, skipped, log)
            path = models[key]
        if path is None:
            continue
        streamed = row.options.get("streams", 1) > 1
        try:
            runner = open_runner(
                path,
                backend=row.runner,
                device=device,
                threads=None if streamed else threads,
                **row.options,
            )
            opened.append((row, runner.load()))
        except BigBiGANError as e:
            skipped.append({"backend": row.backend, "precision": row.precision, "reason": str(e)})
    return opened


def _build(
    row: BenchRow,
    onnx_path: Path,
    checkpoint: Path,
    work: Path,
    device: str,
    skipped: list[dict[str, str]],
    log: Log,
) -> Path | None:
    """The artifact a row runs, compiled into `work`; None (and the reason in `skipped`) when it
    cannot be built here."""
    from bigbigan.compile import compile_model

    log(f"compiling {row.model} {row.precision} ...")
    try:
        started = time.perf_counter()
        report = compile_model(
            onnx_path,
            target=row.model,
            precision=row.precision,
            out=work / row.artifact,
            device=device,
            checkpoint=checkpoint,
        )
    except BigBiGANError as e:
        skipped.append({"backend": row.model, "precision": row.precision, "reason": str(e)})
        log(f"  skipped: {e}")
        return None
    log(f"  {report.path.name} in {time.perf_counter() - started:.0f} s")
    return report.path


def _images(runner: Runner) -> Infer:
    """The runner as a function feed -> its first output (the images)."""
    name = runner.outputs[0].name
    return lambda feed: runner.infer(feed)[name]


def _key(row: BenchRow) -> str:
    return f"{row.backend}|{row.precision}|{row.variant}"


def _label_accuracies(
    opened: Sequence[tuple[BenchRow, Runner]],
    classifier_dir: Path | None,
    cfg: Any,
    samples: int,
    log: Log,
) -> dict[str, float]:
    """Each row's label accuracy (`generated_label_accuracy`), by `_key`; none without a
    classifier."""
    accuracies: dict[str, float] = {}
    for row, runner in opened if classifier_dir is not None else ():
        log(f"label accuracy: {row.backend} {row.precision} {row.variant}".rstrip())
        accuracies[_key(row)] = generated_label_accuracy(
            _images(runner), classifier_dir, cfg.num_classes, cfg.z_dim, samples=samples
        )
    return accuracies


def _time_rows(
    opened: Sequence[tuple[BenchRow, Runner]],
    cfg: Any,
    batch_sizes: Sequence[int],
    warmup: int,
    repeats: int,
    accuracies: dict[str, float],
    device: str,
    log: Log,
) -> list[Row]:
    """Every batch size in turn, on its own seeded feed (`measure`)."""
    import torch

    from bigbigan.interface import offline_specs, random_feed

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    specs, _ = offline_specs(cfg)
    rows: list[Row] = []
    for batch in batch_sizes:
        feed = random_feed(specs, batch, num_classes=cfg.num_classes, seed=1000 + batch)
        active = sum(batch >= row.min_batch for row, _ in opened)
        log(f"batch {batch}: {active} rows, {warmup} + {repeats} calls each")
        rows += measure(
            opened, feed, warmup=warmup, repeats=repeats, accuracies=accuracies, sync=sync
        )
    return rows


def measure(
    opened: Sequence[tuple[BenchRow, Runner]],
    feed: dict[str, np.ndarray],
    *,
    warmup: int,
    repeats: int,
    accuracies: dict[str, float],
    sync: Callable[[], None],
) -> list[Row]:
    """One batch size: every row that takes it timed on `feed` (harness `time_calls`), its images
    compared with PyTorch fp32's (the row with no variant) on the same feed."""
    batch = next(iter(feed.values())).shape[0]
    active = [(row, runner) for row, runner in opened if batch >= row.min_batch]
    outputs: list[np.ndarray] = []
    times: list[list[float]] = []
    for _, runner in active:
        timing, (output,) = time_calls(
            _images(runner), [feed], warmup=max(warmup, 1), loop=repeats, sync=sync
        )  # one warm-up at least: a CUDA graph is captured on its first call
        outputs.append(output)
        times.append(timing.runs_ms)
    reference = next(
        out
        for (row, _), out in zip(active, outputs, strict=True)
        if (row.backend, row.precision, row.variant) == ACCURACY_REFERENCE
    ).astype(np.float64)
    rows = []
    for (row, _), output, ms in zip(active, outputs, times, strict=True):
        stats = row_latency(ms)
        diff = np.abs(output.astype(np.float64) - reference)
        rows.append(
            Row(
                backend=row.backend,
                precision=row.precision,
                variant=row.variant,
                batch=batch,
                images_per_s=batch / (stats["latency_ms"] / 1e3),
                repeats=repeats,
                mean_abs_diff=float(diff.mean()),
                max_abs_diff=float(diff.max()),
                label_accuracy=accuracies.get(_key(row)),
                note=row.note,
                **stats,
            )
        )
    return rows


def set_ratios(rows: Sequence[Row]) -> tuple[str, str, str]:
    """Each row's speed over the reference row's at its batch size; returns the reference
    (REFERENCE, or PyTorch fp32 where there is no ONNX Runtime row, e.g. no CUDA provider)."""
    reference = REFERENCE
    if not any((r.backend, r.precision, r.variant) == REFERENCE for r in rows):
        reference = ACCURACY_REFERENCE
    base = {r.batch: r for r in rows if (r.backend, r.precision, r.variant) == reference}
    for row in rows:
        ref = base.get(row.batch)
        row.ratio = row.images_per_s / ref.images_per_s if ref else None
    return reference
