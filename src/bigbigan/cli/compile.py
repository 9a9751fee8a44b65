"""`bigbigan compile`: an ONNX model built for a runtime (the original's atc step)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bigbigan.cli import args as groups
from bigbigan.runtimes import registry

NAME = "compile"
HELP = "compile an ONNX model for a runtime (the original's atc)"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    p.add_argument("model", help="ONNX model from `bigbigan export`, or a TensorFlow .pb")
    p.add_argument(
        "--target",
        required=True,
        choices=("auto", *registry.targets()),
        help="the runtime to build for; auto: build the CPU candidates, time them here, keep "
        "the fastest within --max-mean-diff",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=(*registry.PRECISIONS, "auto"),
        help="by target; auto: as --target auto, among this target's precisions",
    )
    p.add_argument(
        "--max-mean-diff",
        type=float,
        help="auto: the largest mean abs pixel difference from the source allowed (5e-3)",
    )
    groups.out(
        p,
        "file",
        "the built model (ascend: the .om that atc would build; auto: the suffix is the winner's)",
        required=True,
    )
    groups.device(p)
    groups.checkpoint(p, "aoti: default from the ONNX sidecar")
    groups.batch(
        p, None, "ascend: static batch (default: the ONNX's own, else 256); auto: timed batch (64)"
    )
    p.add_argument(
        "--max-batch", type=groups.positive, default=4096, help="aoti/tensorrt: largest batch"
    )
    p.add_argument("--soc-version", default="Ascend310", help="ascend: atc --soc_version")
    p.add_argument(
        "--ort-level",
        default="all",
        choices=("basic", "extended", "all"),
        help="ort: optimisation level ('all' is tied to this CPU, 'extended' is portable)",
    )
    p.add_argument(
        "--no-rewrite",
        dest="rewrite",
        action="store_false",
        help="fp32 ort/aoti/openvino: keep the upsampling as exported (default: rewrite it, "
        "exactly, to transposed convolutions; see docs/performance.md)",
    )
    groups.tolerance(p, 1e-4, "max")
    return p


def run(args: argparse.Namespace) -> None:
    from bigbigan.compile import compile_model

    groups.output_file(args.out)
    report = compile_model(
        args.model,
        target=args.target,
        out=args.out,
        precision=args.precision,
        device=args.device,
        checkpoint=args.checkpoint,
        batch=args.batch,
        max_batch=args.max_batch,
        soc_version=args.soc_version,
        ort_level=args.ort_level,
        tolerance=args.tolerance,
        rewrite=args.rewrite,
        max_mean_diff=args.max_mean_diff,
    )
    if report.target == "ascend" and Path(report.path).suffix.lower() != ".om":
        _print_ascend(report)
        return
    print(f"wrote {report.path} ({report.target}, {report.precision}, {report.seconds:.1f} s)")
    if report.max_abs_diff is not None:
        print(f"  max abs diff vs the source ONNX: {report.max_abs_diff:.3g}")
    if report.command:
        print(report.command)
    if report.note:
        print(f"  note: {report.note}")


def _print_ascend(report) -> None:
    """No `atc` here: say plainly that what exists is an ONNX file and a command, not an .om."""
    print(
        f"wrote {report.path}: a static-batch ONNX model for atc, NOT an .om "
        f"(validated in ONNX Runtime: max abs diff {report.max_abs_diff:.3g})"
    )
    print("to build the .om, run this where the Ascend CANN toolkit is installed:")
    print(f"  {report.command}")
    print(f"  note: {report.note}")
