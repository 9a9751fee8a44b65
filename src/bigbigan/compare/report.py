"""What `bigbigan compare` and `bigbigan layerwise` print and write: the text reports and the
JSON documents (`bigbigan-compare`, `bigbigan-layerwise`; docs/architecture.md, "File formats").

The comparisons themselves (bigbigan.compare.files, bigbigan.compare.layerwise) return plain
records; this module is the only place that decides how those records read, so the CLI and the
pipeline show the same figures the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bigbigan.compare.statistics import text_histogram
from bigbigan.documents import document

if TYPE_CHECKING:
    from bigbigan.compare.files import FileSummary, PairResult
    from bigbigan.compare.layer_matching import LayerMatch
    from bigbigan.compare.layerwise import LayerResult, LayerwiseReport

COMPARE_FORMAT = "bigbigan-compare"
LAYERWISE_FORMAT = "bigbigan-layerwise"
TABLE_KEYS = ("mean_abs_diff", "mean_diff", "max_abs_diff", "rmse", "psnr", "cosine")
REL_KEYS = ("mean_rel_diff", "median_rel_diff", "p90_rel_diff", "p99_rel_diff", "max_rel_diff")
ABS_KEYS = ("mean_abs_diff", "median_abs_diff", "p90_abs_diff", "p99_abs_diff", "max_abs_diff")
FILE_KEYS = ("mean", "std", "min", "max", "p90", "p99", "nan_count", "inf_count")
LAYER_KEYS = ("max_abs_diff", "mean_abs_diff", "max_rel_diff", "rmse", "cosine")


def clean(v: float) -> float | str:
    """JSON has no NaN/Infinity: write them as strings."""
    return v if not isinstance(v, float) or math.isfinite(v) else str(v)


# ---- compare: files against a reference ----


def pair_json(r: PairResult) -> dict[str, Any]:
    """One file against the reference, as the `pairs` of a compare document."""
    return {
        **_named(r),
        **{k: clean(v) for k, v in r.stats.items()},
        "passed": r.passed,
        "needed_tolerance": clean(r.needed),
        "atol": r.atol,
        "rtol": r.rtol,
        "statistic": r.statistic,
        "quantile": r.quantile if r.statistic == "quantile" else None,
        "abs_error_histogram": [[clean(lo), clean(hi), c] for lo, hi, c in r.histogram],
        "nonfinite": r.nonfinite,
        "failures": r.failures,
        "heatmap": str(r.heatmap) if r.heatmap else None,
        "heatmap_max": r.heatmap_max,
    }


def file_json(f: FileSummary) -> dict[str, Any]:
    """One file's summary, as the `files` of a compare document."""
    return {
        **_named(f),
        "dtype": f.dtype,
        "shape": list(f.shape),
        **{k: clean(v) for k, v in f.stats.items()},
    }


def _named(x: PairResult | FileSummary) -> dict[str, str]:
    return {"name": x.name, "path": str(x.path)}


def compare_document(
    reference: str,
    files: Sequence[FileSummary],
    results: Sequence[PairResult],
    *,
    assumed: Sequence[str],
    bad_files: Sequence[str] | None,
    grid: str | None,
    passed: bool | None,
) -> dict[str, Any]:
    """`compare --json` / `--summary`: `bad_files` is None without `--validate`, `passed` None
    when nothing was checked."""
    return document(
        COMPARE_FORMAT,
        {
            "reference": reference,
            "assumed": list(assumed),
            "files": [file_json(f) for f in files],
            "pairs": [pair_json(r) for r in results],
            "validate": None if bad_files is None else list(bad_files),
            "grid": grid,
            "passed": passed,
        },
    )


def getacc_lines(arrays: Sequence[np.ndarray], names: Sequence[str]) -> list[str]:
    """The original getAcc's figure, the mean pixel difference mean(|a - b|), for every pair."""
    lines = []
    for i, a in enumerate(arrays):
        for b, name in zip(arrays[i + 1 :], names[i + 1 :], strict=True):
            diff = float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            lines.append(f"getAcc mean pixel difference {names[i]} vs {name}: {diff:.6g}")
    return lines


def format_table(results: Sequence[PairResult], reference: str) -> str:
    """One row per file against the reference, with its verdict."""
    header = f"{'vs ' + reference:<24}" + "".join(f"{k:>15}" for k in TABLE_KEYS) + "   result"
    lines = [header]
    for r in results:
        cells = "".join(f"{r.stats[k]:>15.6g}" for k in TABLE_KEYS)
        verdict = {None: "", True: "PASS", False: "FAIL"}[r.passed]
        lines.append(f"{r.name:<24}{cells}   {verdict}")
    return "\n".join(lines)


def format_files(files: Sequence[FileSummary]) -> str:
    """One row per file: its shape and value statistics."""
    width = max(len(f.name) for f in files) + 2
    lines = [f"{'file':<{width}}{'shape':<20}" + "".join(f"{k:>12}" for k in FILE_KEYS)]
    for f in files:
        shape = "x".join(map(str, f.shape))
        cells = "".join(f"{f.stats[k]:>12.5g}" for k in FILE_KEYS)
        lines.append(f"{f.name:<{width}}{shape:<20}{cells}")
    return "\n".join(lines)


def format_report(
    files: Sequence[FileSummary], results: Sequence[PairResult], reference: str
) -> str:
    """Everything `compare` prints: file summaries, the pair table, then per pair its error
    statistics, tolerance verdict and error histogram."""
    lines = [format_files(files), "", format_table(results, reference)]
    for r in results:
        lines += ["", f"{r.name} vs {reference}:", *_pair_lines(r)]
    return "\n".join(lines)


def _pair_lines(r: PairResult) -> list[str]:
    lines = [
        "  abs error  " + "  ".join(f"{k[:-9]} {r.stats[k]:.4g}" for k in ABS_KEYS),
        "  rel error  " + "  ".join(f"{k[:-9]} {r.stats[k]:.4g}" for k in REL_KEYS),
        f"  PSNR {r.stats['psnr']:.2f} dB  cosine {r.stats['cosine']:.8f}",
    ]
    stat = r.statistic + (f" {r.quantile:g}" if r.statistic == "quantile" else "")
    if r.atol is not None:
        verdict = "PASS" if not r.failures else "FAIL: " + "; ".join(r.failures)
        lines.append(
            f"  tolerance  atol {r.atol:g}, rtol {r.rtol:g}, statistic {stat}: "
            f"smallest passing atol {r.needed:.4g}  {verdict}"
        )
    else:
        lines.append(f"  smallest passing atol ({stat}): {r.needed:.4g}")
        if r.failures:
            lines.append("  FAIL: " + "; ".join(r.failures))
    if r.heatmap is not None:
        lines.append(f"  error heat-map: {r.heatmap} (brightest = {r.heatmap_max:.3g})")
    lines.append("  |abs error| histogram:")
    lines += ["    " + row for row in text_histogram(r.histogram).splitlines()]
    return lines


# ---- layerwise: an ONNX model against its PyTorch source ----


def layer_json(r: LayerResult) -> dict[str, Any]:
    """One matched layer, as the `layers` of a layerwise document."""
    m = r.match
    return {
        "layer": m.layer,
        "kind": m.kind,
        "onnx_value": m.value,
        "onnx_node": m.node,
        "onnx_op": m.op,
        "fused": m.fused,
        "shape": list(m.sample_shape),
        **{k: clean(v) for k, v in r.stats.items()},
        "atol": r.atol,
        "rtol": r.rtol,
        "needed_atol": clean(r.needed),
        "passed": r.passed,
        "note": r.note,
    }


def layerwise_document(report: LayerwiseReport) -> dict[str, Any]:
    """`layerwise --json` / `--summary`."""
    first = report.first_divergence
    return document(
        LAYERWISE_FORMAT,
        {
            "model": str(report.model),
            "checkpoint": str(report.checkpoint),
            "batch": report.batch,
            "statistic": report.statistic,
            "passed": report.passed,
            "first_divergence": layer_json(first) if first else None,
            "layers": [layer_json(r) for r in report.results],
            "unmatched": report.unmatched,
            "chunks": report.chunks,
            "seconds": round(report.seconds, 3),
            "peak_rss_mb": round(report.peak_rss_mb, 1),
        },
    )


def format_layerwise(report: LayerwiseReport) -> str:
    """A table of every matched layer in execution order, then the verdict."""
    width = max([len(_label(r.match)) for r in report.results] + [5])
    head = f"{'#':>3}  {'layer':<{width}}  {'onnx op':<18}"
    head += "".join(f"{k:>15}" for k in LAYER_KEYS) + f"{'needed atol':>13}  result"
    lines = [
        f"layerwise: {report.model} vs PyTorch ({report.checkpoint}), batch {report.batch}, "
        f"statistic {report.statistic}",
        head,
    ]
    for i, r in enumerate(report.results, 1):
        cells = "".join(f"{r.stats[k]:>15.4g}" for k in LAYER_KEYS)
        verdict = "ok" if r.passed else "DIVERGES"
        note = f"  ({r.note})" if r.note else ""
        lines.append(
            f"{i:>3}  {_label(r.match):<{width}}  {r.match.op:<18}{cells}{r.needed:>13.3g}  "
            f"{verdict}{note}"
        )
    if report.unmatched:
        lines.append(f"not compared ({len(report.unmatched)}):")
        lines += [f"  {path or '(root)'}: {why}" for path, why in report.unmatched.items()]
    first = report.first_divergence
    if first is None:
        lines.append(f"all {len(report.results)} matched layers agree within tolerance")
    else:
        m = first.match
        also = f"; the same ONNX node also computes {', '.join(m.fused)}" if m.fused else ""
        lines.append(
            f"first divergence: {m.layer} ({m.kind}; ONNX node {m.node}, {m.op}{also}): "
            f"needed atol {first.needed:.3g} > {first.atol:g} (rtol {first.rtol:g})"
        )
    lines.append(
        f"{len(report.results)} layers in {report.chunks} chunk(s), {report.seconds:.1f} s, "
        f"peak memory {report.peak_rss_mb:.0f} MB"
    )
    return "\n".join(lines)


def _label(m: LayerMatch) -> str:
    return f"{m.layer} (+{','.join(m.fused)})" if m.fused else m.layer
