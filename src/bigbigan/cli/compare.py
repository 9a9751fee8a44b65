"""`bigbigan compare`: output files against a reference (the original's getAcc), in stages:
load, summarise, compare with tolerances, validate; `--layerwise` hands over to `layerwise`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bigbigan.cli import args as groups
from bigbigan.cli import layerwise
from bigbigan.errors import BigBiGANError, UsageError

NAME = "compare"
HELP = (
    "compare output files with a reference (getAcc), or an ONNX model with PyTorch "
    "layer by layer; exit 0 pass, 1 fail, 2 bad usage"
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    p.add_argument("reference", help="reference .bin/.npy (or, with --layerwise, the .onnx)")
    p.add_argument("others", nargs="*", help="files to compare with it")
    p.add_argument("--names", help="comma-separated labels, reference first")
    p.add_argument(
        "--grid", metavar="FILE", help="PNG with the first 8 images of every file (+ error maps)"
    )
    groups.tolerances(p)
    p.add_argument("--validate", action="store_true", help="fail on NaN/Inf in any file")
    p.add_argument(
        "--shape",
        type=_shape,
        help="raw .bin files without a sidecar hold float32 of this shape, e.g. 256,32,32,1 "
        "(default: a sidecar in the run, --model, or the size as 32x32 NHWC images)",
    )
    p.add_argument("--model", help="raw .bin files without a sidecar hold this model's output")
    groups.json_flag(p)
    groups.summary(p)
    p.add_argument(
        "--layerwise", action="store_true", help="= `bigbigan layerwise`: first layer off"
    )
    layerwise.add_search_arguments(p, "layerwise: ")
    return p


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected positive integers like 256,32,32,1, found {text}"
        )
    return dims


def run(args: argparse.Namespace) -> int:
    if args.layerwise and (args.shape or args.model):
        raise UsageError("--shape and --model only apply to files, not --layerwise")
    if args.layerwise and args.others:
        raise UsageError("--layerwise takes one ONNX model, no other files")
    if not args.layerwise:
        if not args.others:
            raise UsageError("give the reference and at least one file to compare")
        given = [f"--{k.replace('_', '-')}" for k in layerwise.ONLY if getattr(args, k)]
        if given:
            raise UsageError(f"{', '.join(given)} only apply with --layerwise")
    tolerances = layerwise.tolerances(args, layerwise=args.layerwise)
    if args.layerwise:
        return layerwise.search(args, tolerances)
    checked = bool(args.atol or args.rtol) or args.tolerance is not None
    statistic = tolerances.statistic
    return _files(args, tolerances if checked else None, statistic)


def _files(args: argparse.Namespace, tolerances, statistic: str) -> int:
    from bigbigan.compare.files import (
        ORIGINAL_GRID,
        ORIGINAL_LABELS,
        compare_arrays,
        default_names,
        is_image_batch,
        load_outputs,
        save_error_maps,
        save_side_by_side,
        summarize_files,
        validate_files,
    )
    from bigbigan.compare.report import compare_document

    files = [args.reference, *args.others]
    names = args.names.split(",") if args.names else default_names(files)
    if len(names) != len(files):
        raise BigBiGANError(f"--names: {len(names)} name(s) for {len(files)} files")
    if tolerances is not None:
        known = set(names[1:]) | {Path(f).stem for f in files[1:]}
        tolerances.check_names(known | {Path(f).name for f in files[1:]})
    assumed: list[str] = []
    arrays = load_outputs(files, shape=args.shape, model=args.model, notes=assumed)
    summaries = summarize_files(arrays, names, files)
    results = compare_arrays(
        arrays, names, files, statistic=statistic, tolerances=tolerances, validate=args.validate
    )
    bad_files = validate_files(summaries) if args.validate else []
    # the original's own files (gpu_out.bin, sidecar-less) get getAcc's grid unasked, beside them
    original = assumed and Path(files[0]).stem in ORIGINAL_LABELS
    grid_path = args.grid or (str(Path(files[0]).parent / ORIGINAL_GRID) if original else None)
    grid = grid_path if grid_path and is_image_batch(arrays[0]) else None
    if grid:
        save_side_by_side(arrays, names, grid)
        save_error_maps(arrays, results, grid)
    failed = bool(bad_files) or any(r.passed is False for r in results)
    checked = tolerances is not None or args.validate
    report = compare_document(
        files[0],
        summaries,
        results,
        assumed=assumed,
        bad_files=bad_files if args.validate else None,
        grid=grid,
        passed=(not failed) if checked else None,
    )
    _report(args, report, summaries, results, names, arrays, bad_files, failed if checked else None)
    return 1 if failed else 0


def _report(args, report, summaries, results, names, arrays, bad_files, failed) -> None:
    """The JSON file (--summary), then the JSON line (--json) or the text report (what was
    assumed about sidecar-less files first, getAcc's figures last); `failed` is None when
    nothing was checked (no tolerance, no --validate)."""
    from bigbigan.compare.report import format_report, getacc_lines
    from bigbigan.fsutil import write_text

    if args.summary:
        write_text(args.summary, json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
        return
    for line in report["assumed"]:
        print(f"assumed: {line}")
    print(format_report(summaries, results, names[0]))
    print("\n".join(["", *getacc_lines(arrays, names)]))
    for line in bad_files:
        print(f"NaN/Inf: {line}")
    if args.grid or report["grid"]:
        grid, reference_file = report["grid"], report["reference"]
        print(f"grid: {grid}" if grid else f"grid: not written ({reference_file} is not images)")
    if failed is not None:
        print("FAIL" if failed else "PASS")
