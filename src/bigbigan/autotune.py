"""`compile --target auto` / `--precision auto`: build the candidates, time them here, keep one.

Which artefact is fastest depends on the CPU more than on anything a user can see: on an
AVX2-only EPYC int8 barely beats fp32 and bf16 is emulated (0.68x plain ORT), on an AMX Xeon
bf16 and int8 are 2x and more (docs/performance.md). So the choice is measured, not guessed:
every candidate (target, precision) this machine can build is compiled and validated as usual,
then all of them are timed in turn on one seeded feed, and the fastest whose mean abs pixel
difference from the fp32 source is within the bound is written. bf16 is a candidate only with
native bf16 (AVX512_BF16 or AMX). Timings within TIE of the fastest count as a tie, won by the
earlier candidate in CANDIDATES (fp32 before reduced precision, ORT before AOTInductor), so that
noise between two near-equal artefacts does not flip the choice from one run to the next.
ORT fp32 is tried with and without the upsampling rewrite: the rewrite's stride-2 transposed
convolutions win at large batches but lose at batch 1 on an AVX2-only EPYC (6.7-9.4 ms against
4.8-6.6 ms for the graph as exported, docs/performance.md), so `--batch 1` may keep the latter.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bigbigan.cpu import has_native_bf16, isa_class, relevant_flags
from bigbigan.documents import read_document, sidecar_path
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import guard_output
from bigbigan.interface import random_feed


class Build(NamedTuple):
    """One artefact `compile` can make: a candidate before it is built."""

    target: str
    precision: str
    rewrite: bool = True  # the upsampling rewrite (model/rewrite.py); fp32 builds only

    @property
    def key(self) -> str:
        return f"{self.target}:{self.precision}" + ("" if self.rewrite else ":as-exported")


# Preference order: it breaks ties (exact before approximate, portable before compiled).
CANDIDATES: tuple[Build, ...] = (
    Build("ort", "fp32"),
    Build("ort", "fp32", rewrite=False),
    Build("aoti", "fp32"),
    Build("ort", "int8"),
    Build("aoti", "int8"),
    Build("aoti", "bf16"),
)
SUFFIX = {"ort": ".onnx", "aoti": ".pt2"}
DEFAULT_MAX_MEAN_DIFF = 5e-3  # the reduced-precision targets (int8 and bf16 <= 5e-3)
DEFAULT_BATCH = 64
TIMING_SEED = 7  # neither calibration's, validation's nor the int8 probe's seed
TIE = 0.05  # within 5% of the fastest: a tie


@dataclass
class Candidate:
    """One Build tried: what it measured, or why it was not."""

    target: str
    precision: str
    path: Path | None = None
    images_per_s: float | None = None
    runs_s: list[float] | None = None
    mean_abs_diff: float | None = None
    max_abs_diff: float | None = None
    skipped: str = ""  # why it was not built or not eligible
    note: str = ""
    rewrite: bool = True

    @property
    def key(self) -> str:
        return Build(self.target, self.precision, self.rewrite).key

    def record(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "precision": self.precision,
            "rewrite": self.rewrite,
            "images_per_s": None if self.images_per_s is None else round(self.images_per_s, 1),
            "runs_s": None if self.runs_s is None else [round(t, 5) for t in self.runs_s],
            "mean_abs_diff": self.mean_abs_diff,
            "max_abs_diff": self.max_abs_diff,
            "skipped": self.skipped or None,
            "note": self.note,
        }


def candidates_for(
    target: str, precision: str, flags: frozenset[str] | None = None, rewrite: bool = True
) -> tuple[list[Build], dict[str, str]]:
    """The builds to try for `--target`/`--precision` (either may be "auto"; `rewrite=False`,
    i.e. `--no-rewrite`, keeps only builds without the rewrite), and those left out on this CPU
    with the reason."""
    chosen, left_out = [], {}
    for build in CANDIDATES:
        t, p = build.target, build.precision
        if target not in ("auto", t) or precision not in ("auto", p):
            continue
        if build.rewrite and p == "fp32" and not rewrite:
            continue
        if p == "bf16" and not has_native_bf16(flags):
            left_out[build.key] = (
                f"no native bf16 on this CPU ({isa_class(flags)}: neither AVX512_BF16 nor AMX); "
                "emulated bf16 is slower than fp32"
            )
            continue
        chosen.append(build)
    return chosen, left_out


def choose(candidates: list[Candidate], max_mean_diff: float) -> tuple[Candidate, str]:
    """The winner among measured candidates and the one-line reason; ties (TIE) go to the
    earlier candidate."""
    eligible = [
        c
        for c in candidates
        if c.images_per_s is not None
        and c.mean_abs_diff is not None
        and c.mean_abs_diff <= max_mean_diff
    ]
    if not eligible:
        tried = "; ".join(f"{c.key}: {c.skipped or 'measured'}" for c in candidates)
        raise BigBiGANError(
            f"no candidate was built and within --max-mean-diff {max_mean_diff:g} ({tried})"
        )
    fastest = max(c.images_per_s for c in eligible)
    winner = next(c for c in eligible if c.images_per_s >= (1 - TIE) * fastest)
    others = [c for c in eligible if c is not winner]
    versus = ", ".join(f"{c.key} {c.images_per_s:.0f}" for c in others) or "no other eligible"
    why = (
        f"{winner.key} won on this {isa_class()} CPU: {winner.images_per_s:.0f} images/s "
        f"(vs {versus}), mean |d| {winner.mean_abs_diff:.2g} <= {max_mean_diff:g}"
    )
    if winner.images_per_s < fastest:
        why += f" (within {TIE:.0%} of the fastest: a tie, kept by preference order)"
    return winner, why


def time_candidates(
    candidates: list[Candidate],
    feed: dict[str, np.ndarray],
    reference: np.ndarray,
    output: str,
    repeats: int,
) -> None:
    """Time every built candidate on `feed`, in turn (one warm-up round), median of `repeats`;
    its mean/max abs diff from `reference` on the same feed."""
    from bigbigan.harness.timing import time_in_turn
    from bigbigan.runtimes import open_runner

    built = [c for c in candidates if c.path is not None]
    runners = [open_runner(c.path).load() for c in built]
    try:
        outputs, seconds = time_in_turn(runners, feed, repeats)
    finally:
        for runner in runners:
            runner.close()
    batch = next(iter(feed.values())).shape[0]
    for c, out, runs in zip(built, outputs, seconds, strict=True):
        diff = np.abs(out[output] - reference)
        c.mean_abs_diff, c.max_abs_diff = float(diff.mean()), float(diff.max())
        c.runs_s, c.images_per_s = runs, batch / statistics.median(runs)


def compile_auto(
    build: Callable[..., Any],
    onnx_path: Path,
    out: Path,
    *,
    target: str,
    precision: str,
    inputs: list,
    output: str,
    num_classes: int | None,
    max_mean_diff: float = DEFAULT_MAX_MEAN_DIFF,
    batch: int = DEFAULT_BATCH,
    repeats: int = 5,
    **options: Any,
) -> Any:
    """Build every candidate with `build` (compile_model), time them, write the winner to `out`
    with its suffix (`out` = `G` or `G.onnx` -> `G.onnx` or `G.pt2`) and an `autotune` record
    in its sidecar. Returns the winner's CompileReport, its note the one-line explanation."""
    from bigbigan.runtimes.build import write_sidecar
    from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner

    if not max_mean_diff > 0:
        raise BigBiGANError(f"--max-mean-diff {max_mean_diff}: expected a positive number")
    if options.get("device", "cpu") != "cpu":
        raise BigBiGANError("--target auto / --precision auto chooses among CPU artefacts only")
    builds, left_out = candidates_for(target, precision, rewrite=options.pop("rewrite", True))
    if not builds:
        raise BigBiGANError(f"--target {target} --precision {precision}: no candidate here")
    stem = out.with_suffix("") if out.suffix.lower() in (".onnx", ".pt2", ".ort") else out
    for suffix in {SUFFIX[b.target] for b in builds}:  # the winner's name: never the source's
        final = stem.with_name(stem.name + suffix)
        guard_output(final, f"--out {out} would write", reads=(onnx_path,))
    work = Path(tempfile.mkdtemp(prefix=f".{stem.name}.auto.", dir=stem.parent))
    try:
        candidates = [Candidate(b.target, b.precision, rewrite=b.rewrite) for b in builds]
        reports = {}
        for c in candidates:
            try:
                # the final name already: AOTInductor names the archive's root after it
                where = work / c.key.replace(":", "-") / (stem.name + SUFFIX[c.target])
                report = build(onnx_path, target=c.target, precision=c.precision, out=where,
                               rewrite=c.rewrite, **options)  # fmt: skip
            except BigBiGANError as e:
                c.skipped = f"not built: {e}"
                continue
            c.path, c.note, reports[c.key] = report.path, report.note, report
        feed = random_feed(inputs, batch, num_classes=num_classes, seed=TIMING_SEED)
        with OnnxRuntimeRunner(onnx_path) as source:
            reference = source.infer(feed)[output]
        time_candidates(candidates, feed, reference, output, repeats)
        for c in candidates:
            if c.mean_abs_diff is not None and c.mean_abs_diff > max_mean_diff:
                c.skipped = f"mean |d| {c.mean_abs_diff:.3g} > --max-mean-diff {max_mean_diff:g}"
        winner, why = choose(candidates, max_mean_diff)
        final = stem.with_name(stem.name + SUFFIX[winner.target])
        meta = read_document(sidecar_path(winner.path))
        doc_format = meta.pop("format")
        meta.pop("version", None)
        meta["autotune"] = {
            "chosen": winner.key,
            "why": why,
            "max_mean_diff": max_mean_diff,
            "timing": {
                "batch": batch,
                "seed": TIMING_SEED,
                "repeats": repeats,
                "statistic": "median",
                "tie": TIE,
            },  # fmt: skip
            "candidates": [c.record() for c in candidates],
            "left_out": left_out,
            "cpu": {"isa_class": isa_class(), "flags": relevant_flags()},
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        }
        write_sidecar(winner.path, meta, doc_format)
        os.replace(sidecar_path(winner.path), sidecar_path(final))
        os.replace(winner.path, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = reports[winner.key]
    report.path, report.sidecar, report.note = final, sidecar_path(final), why
    return report
