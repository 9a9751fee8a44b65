"""`bigbigan bench`: every backend and precision side by side, in one process, on the same inputs.

    rows = bench(None, ch=64, batch_sizes=(1, 16, 256), out="out/bench").rows

One checkpoint (given, or random weights with measured batch-norm statistics) is exported once
and compiled for every target that is available here; then, per batch size, every row runs
the same seeded inputs: warm-up calls (at least one, excluded), then `repeats` timed calls
(harness/timing.py, the loop `infer` uses; the last call gives the accuracy figures). Each row
has images/s (batch / median latency), the median latency and its spread (p10, p90, IQR), the
mean/max absolute pixel difference against PyTorch fp32 on the same inputs, and the speed ratio
against the plain ONNX Runtime fp32 session (`bigbigan export`'s file, default options) measured
in the same run. Output: a table, `bench.json`,
`bench.png`. The rows come from the registry: each backend's runtime module lists its rows as
`open_runner` arguments (runtimes/registry.py `BenchRow`), and the artifacts they need are built
with `compile_model`.

On a GPU (`device="cuda"`) the rows are PyTorch eager and CUDA graphs in fp32/bf16/fp16,
AOTInductor packages for CUDA, and ONNX Runtime's CUDA provider where installed; every row also
reports the fraction of the GPU's dense bf16 peak that it reaches.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan import limits
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import atomic_path, ensure_dir, write_text
from bigbigan.harness.machine import machine_info
from bigbigan.harness.timing import latency_stats, time_calls
from bigbigan.runtimes import registry
from bigbigan.runtimes.base import Runner
from bigbigan.runtimes.registry import BenchRow, BenchSettings

FORMAT = "bigbigan-bench"
VERSION = 1
BATCH_SIZES = (1, 16, 256)
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
REFERENCE = (
    "onnxruntime",
    "fp32",
    "",
)  # the row every ratio divides by (backend, precision, variant)
DEFAULT_MICRO_BATCH = 32  # AOTInductor packages also run large batches in slices of this size
DEFAULT_STREAMS = os.cpu_count() or 1  # ONNX Runtime rows also run with one copy per core
RANDOM_SEED = 0
LABEL_SAMPLES = 1000

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


@dataclass
class Row:
    """One (backend, precision, variant) at one batch size."""

    backend: str
    precision: str
    variant: str  # "", "channels-last", "micro-batch 32", "cuda graph", ...
    batch: int
    images_per_s: float  # batch / median latency
    latency_ms: float  # median over the repeats
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    repeats: int
    mean_abs_diff: float  # vs PyTorch fp32 eager, same inputs
    max_abs_diff: float
    ratio: float | None = None  # images/s over the reference row's at the same batch
    label_accuracy: float | None = None  # evaluation classifier on generated images
    peak_fraction: float | None = None  # GPU: achieved FLOP/s over the dense bf16 peak
    note: str = ""

    @property
    def label(self) -> str:
        return " ".join(x for x in (self.backend, self.precision, self.variant) if x)


@dataclass
class BenchResult:
    rows: list[Row]
    skipped: list[dict[str, str]]  # candidates that could not run here, and why
    meta: dict[str, Any]
    json_path: Path | None = None
    chart_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.meta,
            "summary": summarise(self.rows),
            "rows": [asdict(r) for r in self.rows],
            "skipped": self.skipped,
        }


# ---- arguments ----


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """`"1,16,256"` -> (1, 16, 256); anything else is a one-line error."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise BigBiGANError(f"--batch-sizes {text}: expected comma-separated integers") from None
    if not sizes or any(s < 1 for s in sizes):
        raise BigBiGANError(f"--batch-sizes {text}: expected positive integers")
    return sizes


def parse_names(text: str | None, known: Sequence[str], flag: str) -> tuple[str, ...]:
    """A comma-separated subset of `known` (None: all of them)."""
    if text is None:
        return tuple(known)
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise BigBiGANError(f"{flag} {text}: expected a comma-separated subset of {known}")
    return names


Infer = Callable[[dict[str, np.ndarray]], np.ndarray]


# ---- the model under test ----


def random_checkpoint(
    directory: Path, *, ch: int, dataset: str = "fashion_mnist", seed: int = RANDOM_SEED
) -> Path:
    """A checkpoint with random weights (the reference initialisation, seeded) whose batch-norm
    running statistics are measured on generator inputs, so that images are not saturated at 0
    or 1 (with the initial statistics they are, and pixel differences would mean nothing)."""
    import torch

    from bigbigan.model.networks import BigBiGAN
    from bigbigan.training import checkpoint
    from bigbigan.training.loop import model_config_for
    from bigbigan.training.sampling import truncated_normal

    cfg = model_config_for(dataset, ch=ch, conditional=True)
    limits.check_memory(limits.model_bytes(cfg), f"--ch {ch}")
    torch.manual_seed(seed)
    model = BigBiGAN(cfg)
    norms = [m for m in model.G.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batches
    rng = np.random.default_rng(seed)
    model.G.train()
    with torch.no_grad():
        for _ in range(4):
            z = torch.from_numpy(truncated_normal(rng, (256, cfg.z_dim)))
            model.G(z, torch.from_numpy(rng.integers(0, cfg.num_classes, 256)))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
    checkpoint.save(directory, model, extra={"random_weights": {"seed": seed, "dataset": dataset}})
    return directory


# ---- label accuracy (the evaluation classifier) ----


def default_classifier(dataset: str | None) -> Path | None:
    """The shipped evaluation classifier for `dataset`, if there is one."""
    if dataset is None:
        return None
    try:
        from bigbigan.quality.evaluate import default_classifier_path

        return default_classifier_path(dataset)
    except (ImportError, BigBiGANError):
        return None


def generated_label_accuracy(
    infer: Infer,
    classifier_dir: str | Path,
    num_classes: int,
    z_dim: int = 100,
    samples: int = LABEL_SAMPLES,
    batch: int = 100,
    seed: int = 0,
) -> float:
    """The evaluation classifier's accuracy on images from `infer` (any backend) against the
    labels they were generated for: noise from the training distribution, every class equally
    often. Comparable across backends: the same seed gives the same inputs."""
    import torch

    from bigbigan.quality import classifier as classifier_module
    from bigbigan.quality.metrics import label_accuracy
    from bigbigan.training.sampling import class_labels, truncated_normal

    model, _ = classifier_module.load(classifier_dir)
    rng = np.random.default_rng(seed)
    z = truncated_normal(rng, (samples, z_dim))
    y = class_labels(samples, num_classes)
    images = np.concatenate(
        [infer({"x1": z[i : i + batch], "x2": y[i : i + batch]}) for i in range(0, samples, batch)]
    )
    logits, _ = classifier_module.predict_batched(
        model, torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    )
    return label_accuracy(logits, y)


# ---- the run ----


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


def _open_rows(
    rows: Sequence[BenchRow],
    *,
    checkpoint: Path,
    onnx_path: Path,
    work: Path,
    device: str,
    threads: int | None,
    skipped: list[dict[str, str]],
    log: Callable[[str], None],
) -> list[tuple[BenchRow, Runner]]:
    """Each row's runner, loaded: its model is the checkpoint, the export, or an artifact that
    `compile_model` builds once into `work`. What cannot be built or opened here (a missing
    package, no GPU, ...) is skipped with its reason, never fatal. A row split across streams
    runs one thread a copy; every other row gets `threads`."""
    from bigbigan.compile import compile_model
    from bigbigan.runtimes import open_runner

    models: dict[tuple[str, str, str], Path | None] = {}

    def build(row: BenchRow) -> Path | None:
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
            log(f"  {report.path.name} in {time.perf_counter() - started:.0f} s")
            return report.path
        except BigBiGANError as e:
            skipped.append({"backend": row.model, "precision": row.precision, "reason": str(e)})
            log(f"  skipped: {e}")
            return None

    opened: list[tuple[BenchRow, Runner]] = []
    for row in rows:
        if row.model in ("checkpoint", "onnx"):
            path = checkpoint if row.model == "checkpoint" else onnx_path
        else:
            key = (row.model, row.precision, row.artifact)
            path = models[key] if key in models else models.setdefault(key, build(row))
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


def _images(runner: Runner) -> Infer:
    """The runner as a function feed -> its first output (the images)."""
    name = runner.outputs[0].name
    return lambda feed: runner.infer(feed)[name]


def _key(row: BenchRow) -> str:
    return f"{row.backend}|{row.precision}|{row.variant}"


def _measure(
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
        if (row.backend, row.precision, row.variant) == ("torch", "fp32", "")
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


def _set_ratios(rows: Sequence[Row]) -> tuple[str, str, str]:
    """Each row's speed over the reference row's at its batch size; returns the reference
    (REFERENCE, or PyTorch fp32 where there is no ONNX Runtime row, e.g. no CUDA provider)."""
    reference = REFERENCE
    if not any((r.backend, r.precision, r.variant) == REFERENCE for r in rows):
        reference = ("torch", "fp32", "")
    base = {r.batch: r for r in rows if (r.backend, r.precision, r.variant) == reference}
    for row in rows:
        ref = base.get(row.batch)
        row.ratio = row.images_per_s / ref.images_per_s if ref else None
    return reference


def _check_settings(
    backends: Sequence[str],
    precisions: Sequence[str],
    device: str,
    repeats: int,
    warmup: int,
    micro_batch: int,
    streams: int,
    threads: int | None,
) -> None:
    """Refuse a bad selection before any slow step, one line naming the flag."""
    if repeats < 1 or warmup < 0:
        raise BigBiGANError(f"--repeats {repeats} / --warmup {warmup}: expected >= 1 / >= 0")
    if micro_batch < 0:
        raise BigBiGANError(f"--micro-batch {micro_batch}: expected 0 (off) or a positive size")
    if streams < 0:
        raise BigBiGANError(f"--streams {streams}: expected 0 or 1 (off) or a number of copies")
    known = registry.bench_backends()
    unknown = [b for b in backends if b not in known]
    if unknown:
        raise BigBiGANError(f"--backends {','.join(unknown)}: expected some of {', '.join(known)}")
    if "torch" not in backends or "fp32" not in precisions:
        raise BigBiGANError(
            "--backends/--precisions must include torch and fp32: PyTorch fp32 is the accuracy "
            "reference"
        )
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise BigBiGANError(f"--device {device}: expected cpu, cuda or cuda:N")
    if threads is not None and threads < 1:
        raise BigBiGANError(f"--threads {threads}: expected a positive integer")


def _model_under_test(
    checkpoint: str | Path | None, ch: int, dataset: str, work: Path, log: Callable[[str], None]
) -> tuple[Path, str, Any]:
    """(checkpoint directory, how the JSON names it, its record): the given checkpoint, or
    random weights at width `ch`; bench measures the conditional generator only."""
    from bigbigan.training import checkpoint as checkpoint_module

    if checkpoint is None:
        log(f"random weights, ch={ch} ({dataset} shapes, seed {RANDOM_SEED})")
        checkpoint = random_checkpoint(work / f"random_ch{ch}", ch=ch, dataset=dataset)
        source = f"random weights (ch={ch}, seed {RANDOM_SEED}, batch-norm statistics measured)"
    else:
        source = str(Path(checkpoint).resolve())
    ckpt = checkpoint_module.read(checkpoint)
    if not ckpt.model.conditional:
        raise BigBiGANError(f"{checkpoint}: bench measures the conditional generator (x1, x2)")
    return Path(checkpoint), source, ckpt


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
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Benchmark every available backend and precision on one generator; see the module
    docstring. `backends` None: every registered one (`registry.bench_backends()`).
    `checkpoint` None: random weights at width `ch` (seeded). `classifier`: the evaluation
    classifier directory for label accuracy (default: the shipped one for the checkpoint's
    dataset, when there is one).

    Longer than the rest: it is the run's script, step by step (settings, model, rows, label
    accuracy, timing, ratios, JSON and chart), each step one of the helpers above or a few lines
    that read best where they happen."""
    import torch

    from bigbigan.export import export_onnx
    from bigbigan.interface import offline_specs, random_feed
    from bigbigan.model.networks import generator_flops
    from bigbigan.runtimes.base import require_cuda

    log = log or (lambda _msg: None)
    backends = registry.bench_backends() if backends is None else tuple(backends)
    _check_settings(backends, precisions, device, repeats, warmup, micro_batch, streams, threads)
    require_cuda(device, "bench")
    if threads is not None:
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as in compile
        torch.backends.cudnn.allow_tf32 = False
    out = ensure_dir(out)
    work = ensure_dir(out / "artifacts")

    checkpoint, source, ckpt = _model_under_test(checkpoint, ch, dataset, work, log)
    cfg = ckpt.model
    log("exporting ONNX ...")
    onnx_path = export_onnx(checkpoint, work / "G.onnx").path
    specs, _ = offline_specs(cfg)
    flops = generator_flops(cfg)

    skipped: list[dict[str, str]] = []
    settings = BenchSettings(device, tuple(precisions), streams, micro_batch)
    opened = _open_rows(
        registry.plan_rows(backends, settings),
        checkpoint=checkpoint,
        onnx_path=onnx_path,
        work=work,
        device=device,
        threads=threads,
        skipped=skipped,
        log=log,
    )

    # Label accuracy says something only about trained weights: the shipped classifier is used
    # by default for a given checkpoint of its dataset, never for random weights.
    classifier_dir = Path(classifier) if classifier else None
    if classifier_dir is None and "random_weights" not in ckpt.extra:
        classifier_dir = default_classifier(ckpt.dataset)
    accuracies: dict[str, float] = {}
    for row, runner in opened if classifier_dir is not None else ():
        log(f"label accuracy: {row.backend} {row.precision} {row.variant}".rstrip())
        accuracies[_key(row)] = generated_label_accuracy(
            _images(runner), classifier_dir, cfg.num_classes, cfg.z_dim, samples=label_samples
        )

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    rows: list[Row] = []
    try:
        for batch in batch_sizes:
            feed = random_feed(specs, batch, num_classes=cfg.num_classes, seed=1000 + batch)
            active = sum(batch >= row.min_batch for row, _ in opened)
            log(f"batch {batch}: {active} rows, {warmup} + {repeats} calls each")
            rows += _measure(
                opened, feed, warmup=warmup, repeats=repeats, accuracies=accuracies, sync=sync
            )
    finally:
        for _, runner in opened:
            runner.close()
    ratio_reference = _set_ratios(rows)

    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "device": device,
        "machine": machine_info(device, libraries=True),
        "model": asdict(cfg),
        "checkpoint": source,
        "gflop_per_image": flops / 1e9,
        "batch_sizes": list(batch_sizes),
        "repeats": repeats,
        "warmup": warmup,
        "threads": threads,
        "micro_batch": micro_batch,
        "streams": streams,
        "ratio_reference": " ".join(x for x in ratio_reference if x),
        "accuracy_reference": "torch fp32",
        "classifier": str(classifier_dir) if classifier_dir else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        peak = gpu_bf16_peak(name)
        meta["gpu_bf16_peak_tflops"] = peak / 1e12 if peak else None
        for row in rows:
            if peak:
                row.peak_fraction = row.images_per_s * flops / peak
    result = BenchResult(rows, skipped, meta)
    result.json_path = out / "bench.json"
    write_text(result.json_path, json.dumps(result.to_json(), indent=2) + "\n")
    result.chart_path = save_chart(rows, out / "bench.png", title=bench_title(meta))
    return result


def bench_title(meta: dict[str, Any]) -> str:
    machine = meta["machine"]
    threads = machine["torch_threads"]
    where = f"{machine['cpu']} ({machine['isa']}), {threads} thread{'s' * (threads != 1)}"
    if meta["device"].startswith("cuda") and machine.get("gpu"):
        where = machine["gpu"]
    return f"BigBiGAN generator (ch={meta['model']['ch']}), {where}"


# ---- output ----


def format_table(rows: Sequence[Row], reference: str = "onnxruntime fp32", title: str = "") -> str:
    """The rows as an aligned text table, one block per batch size, under `title` (the run's
    model and machine with its ISA class: `bench_title`)."""
    has_acc = any(r.label_accuracy is not None for r in rows)
    has_peak = any(r.peak_fraction is not None for r in rows)
    head = [
        "batch",
        "backend",
        "precision",
        "variant",
        "images/s",
        "ms (median)",
        "p10-p90 ms",
        f"x {reference}",
        "mean|d|",
        "max|d|",
    ]
    if has_acc:
        head.append("label acc")
    if has_peak:
        head.append("bf16 peak")
    lines = [head]
    for r in rows:
        line = [
            str(r.batch),
            r.backend,
            r.precision,
            r.variant or "-",
            f"{r.images_per_s:,.1f}",
            f"{r.latency_ms:.2f}",
            f"{r.p10_ms:.2f}-{r.p90_ms:.2f}",
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            f"{r.mean_abs_diff:.1e}",
            f"{r.max_abs_diff:.1e}",
        ]
        if has_acc:
            line.append("-" if r.label_accuracy is None else f"{r.label_accuracy:.3f}")
        if has_peak:
            line.append("-" if r.peak_fraction is None else f"{r.peak_fraction:.1%}")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = []
    for n, line in enumerate(lines):
        if n > 1 and line[0] != lines[n - 1][0]:
            text.append("")
        text.append(
            "  ".join(
                cell.rjust(w) if i >= 4 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    return "\n".join([title, *text] if title else text)


def save_chart(rows: Sequence[Row], path: Path, title: str = "") -> Path:
    """Horizontal bars of images/s, one panel per batch size, ratio to the reference written
    beside each bar; written atomically (matplotlib's Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r.batch for r in rows})
    first: dict[tuple[str, str], int] = {}
    for index, r in enumerate(rows):
        first.setdefault((r.backend, r.precision), index)
    ordered = sorted(rows, key=lambda r: (first[(r.backend, r.precision)], r.variant))
    labels = list(dict.fromkeys(r.label for r in ordered))  # a backend's variants side by side
    fig, axes = plt.subplots(
        1,
        len(batches),
        figsize=(4.2 * len(batches) + 2, 0.32 * len(labels) + 1.6),
        sharey=True,
        squeeze=False,
    )
    colors = {"fp32": "#4C72B0", "bf16": "#DD8452", "fp16": "#C44E52", "int8": "#55A868"}
    for ax, batch in zip(axes[0], batches, strict=True):
        by_label = {r.label: r for r in rows if r.batch == batch}
        values = [by_label[lab].images_per_s if lab in by_label else 0.0 for lab in labels]
        bar_colors = [
            colors.get(by_label[lab].precision, "#8172B2") if lab in by_label else "#cccccc"
            for lab in labels
        ]
        positions = np.arange(len(labels))
        ax.barh(positions, values, color=bar_colors)
        for pos, lab in zip(positions, labels, strict=True):
            row = by_label.get(lab)
            if row is not None and row.ratio is not None:
                ax.text(row.images_per_s, pos, f" {row.ratio:.2f}x", va="center", fontsize=7)
        ax.set_title(f"batch {batch}", fontsize=9)
        ax.set_xlabel("images/s")
        ax.set_xlim(0, max(values + [1.0]) * 1.25)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(np.arange(len(labels)), labels, fontsize=8)
    axes[0][0].invert_yaxis()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def summarise(rows: Sequence[Row]) -> dict[str, Any]:
    """The fastest row per precision at the largest batch, and the fastest at batch 1: what the
    performance targets are checked against."""
    if not rows:
        return {}
    largest = max(r.batch for r in rows)
    best: dict[str, Any] = {}
    for precision in PRECISIONS:
        candidates = [r for r in rows if r.batch == largest and r.precision == precision]
        if candidates:
            top = max(candidates, key=lambda r: r.images_per_s)
            best[precision] = {
                "row": top.label,
                "batch": largest,
                "ratio": top.ratio,
                "images_per_s": top.images_per_s,
                "mean_abs_diff": top.mean_abs_diff,
            }
    ones = [r for r in rows if r.batch == 1]
    if ones:
        fastest = min(ones, key=lambda r: r.latency_ms)
        best["batch1"] = {"row": fastest.label, "latency_ms": fastest.latency_ms}
    return best
