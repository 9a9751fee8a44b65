"""`bigbigan compare`: do two stages draw the same pictures? (the original's getAcc).

In stages, as the CLI and the pipeline both use them: `load_outputs` (files -> arrays),
`compare_arrays` (statistics and a tolerance check per file against the reference), and
`save_side_by_side` (the first images of every file in labelled rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.binio import TensorSpec, load_bin
from bigbigan.errors import BigBiGANError
from bigbigan.images import save_labelled_rows
from bigbigan.stats import check_tolerance, pair_stats

GRID_IMAGES = 8  # the original compared the first 8 images side by side
TABLE_KEYS = ("mean_abs_diff", "mean_diff", "max_abs_diff", "rmse", "psnr", "cosine")


@dataclass
class PairResult:
    """One file against the reference."""

    name: str
    path: Path
    stats: dict[str, float]
    passed: bool | None  # None: no tolerance given
    needed: float  # the smallest tolerance that would have passed

    def to_json(self) -> dict[str, Any]:
        def clean(v: float) -> float | str:
            return v if math.isfinite(v) else str(v)

        return {
            "name": self.name,
            "path": str(self.path),
            **{k: clean(v) for k, v in self.stats.items()},
            "passed": self.passed,
            "needed_tolerance": clean(self.needed),
        }


def load_outputs(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """Read the reference (which needs a sidecar) and the others; a file without a sidecar, as
    msame writes them, is read with the reference's dtype and per-image shape."""
    reference = load_bin(paths[0])
    spec = TensorSpec("images", reference.dtype.name, (None, *reference.shape[1:]))
    others = [load_bin(p, spec, batch=reference.shape[0]) for p in paths[1:]]
    return [reference, *others]


def default_names(paths: Sequence[str | Path]) -> list[str]:
    return [Path(p).stem for p in paths]


def compare_arrays(
    arrays: Sequence[np.ndarray],
    names: Sequence[str],
    paths: Sequence[str | Path],
    *,
    tolerance: float | None = None,
    statistic: str = "mean",
) -> list[PairResult]:
    """Statistics of every array against the first; with `tolerance`, a pass/fail per file on
    the chosen statistic of the absolute difference (mean absolute pixel difference, as the
    original, by default)."""
    reference = arrays[0]
    results = []
    for array, name, path in zip(arrays[1:], names[1:], paths[1:], strict=True):
        try:
            stats = pair_stats(reference, array)
            passed, needed = check_tolerance(
                reference, array, atol=tolerance or 0.0, rtol=0.0, statistic=statistic
            )
        except BigBiGANError as e:
            raise BigBiGANError(f"{path}: {e}") from None
        results.append(PairResult(name, Path(path), stats, passed if tolerance else None, needed))
    return results


def save_side_by_side(
    arrays: Sequence[np.ndarray], names: Sequence[str], path: str | Path, n: int = GRID_IMAGES
) -> None:
    """One labelled row per file with its first `n` images."""
    save_labelled_rows([a[:n] for a in arrays], names, path)


def format_table(results: Sequence[PairResult], reference: str) -> str:
    header = f"{'vs ' + reference:<24}" + "".join(f"{k:>15}" for k in TABLE_KEYS) + "   result"
    lines = [header]
    for r in results:
        cells = "".join(f"{r.stats[k]:>15.6g}" for k in TABLE_KEYS)
        verdict = {None: "", True: "PASS", False: "FAIL"}[r.passed]
        lines.append(f"{r.name:<24}{cells}   {verdict}")
    return "\n".join(lines)
