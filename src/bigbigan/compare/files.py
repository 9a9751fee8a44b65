"""`bigbigan compare`: do two stages draw the same pictures? (the original's getAcc).

In stages, as the CLI and the pipeline both use them:
- `load_outputs`: files (`.bin` with or without sidecar, `.npy`) -> arrays;
- `summarize_files`: per file mean, std, min/max, p90/p99 and NaN/Inf counts;
- `compare_arrays`: every file against the reference: absolute and relative error statistics,
  PSNR, cosine, a 10-bin error histogram, and a pass/fail on the chosen statistic with global or
  per-name `atol`/`rtol` (bigbigan.compare.tolerances), plus the smallest tolerance that would
  have passed;
- `save_side_by_side` / `save_error_maps`: the first images of every file in labelled rows, and
  beside them a heat-map of the per-pixel mean absolute error of each file.
How the results read (text and JSON) is bigbigan.compare.report; `bigbigan layerwise` (also
`compare --layerwise`) lives in bigbigan.compare.layerwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bigbigan.binio import load_bin, load_npy, read_sidecar
from bigbigan.compare.statistics import (
    check_tolerance,
    error_histogram,
    error_map,
    pair_stats,
    summarize,
)
from bigbigan.compare.tolerances import Tolerances, failure_line
from bigbigan.documents import sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.images import save_heatmap, save_labelled_rows, to_nhwc
from bigbigan.interface import TensorSpec, format_shape

GRID_IMAGES = 8  # the original compared the first 8 images side by side
HISTOGRAM_BINS = 10


# ---- results ----


@dataclass
class PairResult:
    """One file against the reference."""

    name: str
    path: Path
    stats: dict[str, float]
    passed: bool | None  # None: nothing was checked (no tolerance, no --validate)
    needed: float  # the smallest atol that would have passed (at this pair's rtol)
    atol: float | None = None  # the tolerance applied (None: none given)
    rtol: float | None = None
    statistic: str = "mean"
    quantile: float = 0.99
    histogram: list[tuple[float, float, int]] = field(default_factory=list)
    nonfinite: int = 0  # NaN/Inf values in this file
    failures: list[str] = field(default_factory=list)  # why it failed, one line each
    heatmap: Path | None = None
    heatmap_max: float | None = None  # the error the heat-map's brightest colour stands for


@dataclass
class FileSummary:
    """One file's own values, before any comparison."""

    name: str
    path: Path
    dtype: str
    shape: tuple[int, ...]
    stats: dict[str, float]  # summarize(): mean, std, min, max, p90, p99, nan/inf counts


# ---- the stages ----


ORIGINAL_LABELS = {"gpu_out": "GPU", "pb_out": "pb"}  # getAcc's names for the original's files
ORIGINAL_BATCH = 256  # what the original's files hold, when nothing else says
IMAGE_SIDE = 32  # the offline interface's NHWC images (docs/architecture.md)
ORIGINAL_GRID = "compare_grid.png"  # drawn unasked beside the original's files, as getAcc does


def load_outputs(
    paths: Sequence[str | Path],
    *,
    shape: Sequence[int] | None = None,
    model: str | Path | None = None,
    notes: list[str] | None = None,
) -> list[np.ndarray]:
    """Read the files to compare: a `.npy`, or a `.bin` with its sidecar, or a raw `.bin`
    without one (as msame, getAcc's GPU run and pb_validate write them).

    A raw `.bin` is read as the first of: `shape` (`--shape`, the whole shape of every raw
    file), the dtype and per-sample shape of a file in the list that has them (a sidecar or a
    `.npy`), a `.bin.json` of the same size in these files' folders (elsewhere in the run), the
    output of `model` (`--model`), else float32 NHWC 32x32 images (what the original writes)
    with C and the batch from the size. Every such assumption is appended to `notes`.
    """
    if not paths:
        raise BigBiGANError("nothing to compare: no files given")
    paths = [Path(p) for p in paths]
    notes = notes if notes is not None else []
    raw = [p for p in paths if p.suffix.lower() != ".npy" and not sidecar_path(p).exists()]
    known = [p for p in paths if p not in raw]
    arrays: dict[Path, np.ndarray] = {p: _load(p, None, None) for p in known[:1]}
    if shape is not None:
        spec, batch = TensorSpec("images", "float32", (None, *shape[1:])), shape[0]
        if any(d < 1 for d in shape):
            raise BigBiGANError(f"--shape {format_shape(tuple(shape))}: expected positive dims")
        notes += [
            f"{p}: no sidecar, read as float32 {format_shape(tuple(shape))} (--shape)" for p in raw
        ]
    elif known:
        first = arrays[known[0]]
        spec = TensorSpec("images", first.dtype.name, (None, *first.shape[1:]))
        batch = first.shape[0] if first.ndim else None
        notes += [
            f"{p}: no sidecar, read as {first.dtype.name} like {known[0]} "
            f"({format_shape(spec.shape)})"
            for p in raw
        ]
    else:
        spec, batch = _raw_spec(raw, model, notes)
    reference = arrays.get(paths[0])
    if reference is None:
        reference = _load(paths[0], spec, batch)
    spec = TensorSpec("images", reference.dtype.name, (None, *reference.shape[1:]))
    batch = reference.shape[0] if reference.ndim else None
    return [reference, *(_load(p, spec, batch) for p in paths[1:])]


def _raw_spec(
    raw: Sequence[Path], model: str | Path | None, notes: list[str]
) -> tuple[TensorSpec, int | None]:
    """What raw files hold when no file in the list says: see load_outputs."""
    sizes = {p.stat().st_size if p.is_file() else -1 for p in raw}
    for path in raw:
        if not path.is_file():
            raise BigBiGANError(f"{path}: no such file")
    size = sizes.pop() if len(sizes) == 1 else None
    names = ", ".join(str(p) for p in raw)
    if size is not None:
        for folder in dict.fromkeys(p.resolve().parent for p in raw):
            for sidecar in sorted(folder.glob("*.bin.json")):
                try:
                    dtype, shape = read_sidecar(sidecar)
                except BigBiGANError:
                    continue
                if dtype.itemsize * math.prod(shape) == size and len(shape) > 1:
                    notes.append(
                        f"{names}: no sidecar, read as {dtype.name} "
                        f"{format_shape(shape)} like {sidecar.name} (same size)"
                    )
                    return TensorSpec("images", dtype.name, (None, *shape[1:])), shape[0]
    if model is not None:
        from bigbigan.runtimes import open_runner

        with open_runner(model) as runner:
            out = runner.outputs[0]
        notes.append(
            f"{names}: no sidecar, read as {out.dtype} {format_shape(out.shape)} "
            f"(the output of --model {model})"
        )
        return out, None
    count = (size or 0) // 4
    pixels = IMAGE_SIDE * IMAGE_SIDE
    channels = [c for c in (1, 3) if count and count % (pixels * c) == 0]
    if size is None or size % 4 or not channels:
        example = '{"dtype": "float32", "shape": [256, 32, 32, 1]}'
        found = "files of different sizes" if size is None else f"{size} bytes"
        raise BigBiGANError(
            f"{names}: no sidecar to give dtype and shape, and {found} is not float32 NHWC "
            f"{IMAGE_SIDE}x{IMAGE_SIDE} images (N*{IMAGE_SIDE}*{IMAGE_SIDE}*C*4 bytes, C 1 or "
            f"3); pass --shape N,H,W,C or --model, or write a sidecar (e.g. {example})"
        )
    # C=1 and C=3 can both fit (768 one-channel or 256 three-channel images): the original's
    # batch decides, else one channel
    c = next((c for c in channels if count // (pixels * c) == ORIGINAL_BATCH), channels[0])
    shape = (count // (pixels * c), IMAGE_SIDE, IMAGE_SIDE, c)
    other = [x for x in channels if x != c]
    notes.append(
        f"{names}: no sidecar, assumed float32 NHWC images {format_shape(shape)} from the "
        f"size ({size} bytes = N*{IMAGE_SIDE}*{IMAGE_SIDE}*C*4)"
        + (f"; C={other[0]} would fit too (pass --shape to choose)" if other else "")
    )
    return TensorSpec("images", "float32", (None, *shape[1:])), shape[0]


def _load(path: str | Path, spec: TensorSpec | None, batch: int | None) -> np.ndarray:
    path = Path(path)
    if path.suffix.lower() != ".npy":
        return load_bin(path, spec, batch=batch)
    array = load_npy(path)
    if spec is not None and array.shape[1:] != spec.shape[1:]:
        raise BigBiGANError(
            f"{path}: shape {list(array.shape)}, the reference has {[batch, *spec.shape[1:]]}"
        )
    return array


def default_names(paths: Sequence[str | Path]) -> list[str]:
    """File stems, except the original's (getAcc's) files: gpu_out -> GPU, pb_out -> pb, and
    msame's output in om_out/ -> om."""
    names = []
    for p in map(Path, paths):
        if p.stem in ORIGINAL_LABELS:
            names.append(ORIGINAL_LABELS[p.stem])
        elif p.parent.name == "om_out" and "_output_" in p.stem:
            names.append("om")
        else:
            names.append(p.stem)
    return names if len(set(names)) == len(names) else [Path(p).stem for p in paths]


def summarize_files(
    arrays: Sequence[np.ndarray], names: Sequence[str], paths: Sequence[str | Path]
) -> list[FileSummary]:
    """mean, std, min/max, p90/p99 and NaN/Inf counts of every file, reference first."""
    return [
        FileSummary(name, Path(path), a.dtype.name, tuple(a.shape), summarize(a))
        for a, name, path in zip(arrays, names, paths, strict=True)
    ]


def compare_arrays(
    arrays: Sequence[np.ndarray],
    names: Sequence[str],
    paths: Sequence[str | Path],
    *,
    tolerance: float | None = None,
    statistic: str = "mean",
    tolerances: Tolerances | None = None,
    validate: bool = False,
    keys: Sequence[Sequence[str]] | None = None,
    bins: int = HISTOGRAM_BINS,
) -> list[PairResult]:
    """Statistics of every array against the first, and a pass/fail per file.

    `tolerance` (the pipeline's and `--tolerance`'s) is a threshold on `statistic` of the
    absolute difference (mean absolute pixel difference, as the original, by default);
    `tolerances` is the general form (per-name `atol`/`rtol`, any statistic), and wins when
    both are given. A pair's names for per-name lookups are its label, its file stem and file
    name, and `keys[i]` (e.g. the output name an infer summary gives it). `validate` fails any
    file with NaN/Inf values. With neither, `passed` is None.
    """
    if tolerances is None and tolerance is not None:
        tolerances = Tolerances(atol=tolerance, statistic=statistic)
    reference = arrays[0]
    results = []
    others = list(zip(arrays[1:], names[1:], paths[1:], strict=True))
    for i, (array, name, path) in enumerate(others):
        path = Path(path)
        lookup_names = [name, path.stem, path.name, *(keys[i] if keys else ())]
        try:
            stats = pair_stats(reference, array)
            histogram = error_histogram(reference, array, bins)
            if tolerances is not None:
                atol, rtol = tolerances.lookup(*lookup_names)
                passed, needed = check_tolerance(
                    reference,
                    array,
                    atol=atol,
                    rtol=rtol,
                    statistic=tolerances.statistic,
                    quantile=tolerances.quantile,
                )
            else:
                atol = rtol = None
                _, needed = check_tolerance(reference, array, atol=0, rtol=0, statistic=statistic)
        except BigBiGANError as e:
            raise BigBiGANError(f"{path}: {e}") from e
        failures = []
        if tolerances is not None and not passed:
            failures.append(failure_line(tolerances, needed, atol, rtol))
        nonfinite = int(np.asarray(array).size - np.count_nonzero(np.isfinite(array)))
        if validate and nonfinite:
            failures.append(f"{nonfinite} NaN/Inf values")
        checked = tolerances is not None or validate
        results.append(
            PairResult(
                name,
                path,
                stats,
                (not failures) if checked else None,
                needed,
                atol=atol,
                rtol=rtol,
                statistic=tolerances.statistic if tolerances else statistic,
                quantile=tolerances.quantile if tolerances else 0.99,
                histogram=histogram,
                nonfinite=nonfinite,
                failures=failures,
            )
        )
    return results


def validate_files(files: Sequence[FileSummary]) -> list[str]:
    """`--validate`: one line per file holding NaN/Inf values."""
    return [
        f"{f.path}: {f.stats['nan_count']} NaN, {f.stats['inf_count']} Inf"
        for f in files
        if f.stats["nan_count"] or f.stats["inf_count"]
    ]


def is_image_batch(array: np.ndarray) -> bool:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}: something to draw."""
    if array.ndim == 3:
        return True
    return array.ndim == 4 and (array.shape[-1] in (1, 3) or array.shape[1] in (1, 3))


def save_side_by_side(
    arrays: Sequence[np.ndarray], names: Sequence[str], path: str | Path, n: int = GRID_IMAGES
) -> None:
    """One labelled row per file with its first `n` images."""
    save_labelled_rows([a[:n] for a in arrays], names, path)


def heatmap_path(grid: str | Path, name: str) -> Path:
    """`out/grid.png`, `onnx` -> `out/grid_error_onnx.png`."""
    grid = Path(grid)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "file"
    return grid.with_name(f"{grid.stem}_error_{safe}.png")


def save_error_maps(
    arrays: Sequence[np.ndarray], results: Sequence[PairResult], grid: str | Path
) -> None:
    """Beside the grid, per file a heat-map of the per-pixel mean absolute error against the
    reference (over the batch and the channels), scaled to its own maximum, which is recorded
    in the result (`heatmap_max`)."""
    reference = to_nhwc(arrays[0])
    for array, result in zip(arrays[1:], results, strict=True):
        values = error_map(reference, to_nhwc(array))
        values = np.nan_to_num(values, nan=np.nanmax(values, initial=0.0))
        path = heatmap_path(grid, result.name)
        save_heatmap(values, path)
        result.heatmap, result.heatmap_max = path, float(values.max())
