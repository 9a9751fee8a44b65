"""What a bench run reports: its rows, the JSON document (`bench.json`), the text table, the
chart, the summary the performance targets are checked against, and the automatic choice: per
batch size, the row `compile --target auto` would keep on this machine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.autotune import DEFAULT_MAX_MEAN_DIFF, Build, Candidate, candidates_for, choose
from bigbigan.bench.settings import PRECISIONS
from bigbigan.documents import document, write_document
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import atomic_path

FORMAT = "bigbigan-bench"
VERSION = 1
JSON_FILE = "bench.json"
CHART_FILE = "bench.png"
AUTO_MARK = "<- auto"


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
    meta: dict[str, Any]  # the run's settings, machine and model (the JSON's top level)
    auto: list[dict[str, Any]] = field(default_factory=list)  # `auto_choice`
    json_path: Path | None = None
    chart_path: Path | None = None

    def body(self) -> dict[str, Any]:
        """The `bench.json` document without its header."""
        return {
            **self.meta,
            "summary": summarise(self.rows),
            "auto": self.auto,
            "rows": [asdict(r) for r in self.rows],
            "skipped": self.skipped,
        }

    def to_json(self) -> dict[str, Any]:
        """The `bench.json` document, header included (what `bench --json` prints)."""
        return document(FORMAT, self.body(), VERSION)

    def write(self, out: Path) -> BenchResult:
        """`bench.json` and `bench.png` into `out`, each atomically."""
        self.json_path = write_document(out / JSON_FILE, FORMAT, self.body(), version=VERSION)
        self.chart_path = save_chart(self.rows, out / CHART_FILE, bench_title(self.meta), self.auto)
        return self


def auto_choice(
    rows: Sequence[Row], max_mean_diff: float = DEFAULT_MAX_MEAN_DIFF
) -> list[dict[str, Any]]:
    """Per batch size, the row `compile --target auto` would keep here: bigbigan.autotune's own
    `choose` (fastest within `max_mean_diff`, ties to the earlier candidate) over the rows that
    are its candidates on this CPU (`ort`/`aoti` artifacts as built, no variant; bf16 only with
    native bf16; the plain `onnxruntime fp32` row stands for ORT fp32 without the rewrite, the
    same graph), with bench's speed and accuracy. The accuracy is against PyTorch fp32 here and
    against the fp32 ONNX in autotune, which agree within 1e-5. Batches with no candidate row
    (say `--backends torch`) have no entry; one where none is within the bound has `row` None
    and the reason."""
    builds, _ = candidates_for("auto", "auto")
    rank = {build: i for i, build in enumerate(builds)}
    as_built = ((_build_of(r), r) for r in rows if not r.variant)  # compile cannot write variants
    eligible = [(b, r) for b, r in as_built if b in rank]
    choices = []
    for batch in sorted({r.batch for r in rows}):
        measured = sorted(
            ((b, r) for b, r in eligible if r.batch == batch), key=lambda pair: rank[pair[0]]
        )
        if not measured:
            continue
        candidates = [
            Candidate(
                build.target,
                build.precision,
                images_per_s=r.images_per_s,
                mean_abs_diff=r.mean_abs_diff,
                max_abs_diff=r.max_abs_diff,
                rewrite=build.rewrite,
            )
            for build, r in measured
        ]
        try:
            winner, why = choose(candidates, max_mean_diff)
        except BigBiGANError as err:
            choices.append({"batch": batch, "row": None, "why": str(err)})
            continue
        row = next(r for c, (_, r) in zip(candidates, measured, strict=True) if c is winner)
        choices.append({"batch": batch, "row": f"{row.backend} {row.precision}", "why": why})
    return choices


def _build_of(row: Row) -> Build:
    """The autotune build a bench row measures (the plain ONNX Runtime session runs the graph
    as exported, as `compile --target ort --no-rewrite` writes it)."""
    if row.backend == "onnxruntime":
        return Build("ort", row.precision, rewrite=False)
    return Build(row.backend, row.precision)


def _auto_rows(auto: Sequence[dict[str, Any]]) -> set[tuple[int, str]]:
    """(batch, row label) of every automatic choice."""
    return {(c["batch"], c["row"]) for c in auto if c["row"]}


def bench_title(meta: dict[str, Any]) -> str:
    """The run's model and machine with its ISA class, for the table and the chart."""
    machine = meta["machine"]
    threads = machine["torch_threads"]
    where = f"{machine['cpu']} ({machine['isa']}), {threads} thread{'s' * (threads != 1)}"
    if meta["device"].startswith("cuda") and machine.get("gpu"):
        where = machine["gpu"]
    return f"BigBiGAN generator (ch={meta['model']['ch']}), {where}"


def _cells(r: Row, has_acc: bool, has_peak: bool, auto: bool | None) -> list[str]:
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
    if auto is not None:
        line.append(AUTO_MARK if auto else "")
    return line


def format_table(
    rows: Sequence[Row],
    reference: str = "onnxruntime fp32",
    title: str = "",
    auto: Sequence[dict[str, Any]] = (),
) -> str:
    """The rows as an aligned text table, one block per batch size, under `title` (the run's
    model and machine with its ISA class: `bench_title`); with `auto` (`auto_choice`), the row
    automatic compilation would keep at each batch is marked in a last column."""
    has_acc = any(r.label_accuracy is not None for r in rows)
    has_peak = any(r.peak_fraction is not None for r in rows)
    chosen = _auto_rows(auto)
    head = ["batch", "backend", "precision", "variant", "images/s", "ms (median)", "p10-p90 ms",
            f"x {reference}", "mean|d|", "max|d|"]  # fmt: skip
    head += ["label acc"] * has_acc + ["bf16 peak"] * has_peak + ["auto"] * bool(chosen)
    lines = [head]
    for r in rows:
        mark = (r.batch, r.label) in chosen if chosen else None
        lines.append(_cells(r, has_acc, has_peak, mark))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = []
    for n, line in enumerate(lines):
        if n > 1 and line[0] != lines[n - 1][0]:
            text.append("")
        cells = (
            cell.rjust(w) if 4 <= i < 10 + has_acc + has_peak else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        text.append("  ".join(cells).rstrip())
    return "\n".join([title, *text] if title else text)


def save_chart(
    rows: Sequence[Row], path: Path, title: str = "", auto: Sequence[dict[str, Any]] = ()
) -> Path:
    """Horizontal bars of images/s, one panel per batch size, ratio to the reference written
    beside each bar (and "auto" beside the automatic choice); written atomically (matplotlib's
    Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r.batch for r in rows})
    chosen = _auto_rows(auto)
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
                text = f" {row.ratio:.2f}x" + (" auto" if (batch, lab) in chosen else "")
                ax.text(row.images_per_s, pos, text, va="center", fontsize=7)
        ax.set_title(f"batch {batch}", fontsize=9)
        ax.set_xlabel("images/s")
        ax.set_xlim(0, max(values + [1.0]) * 1.3)
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
