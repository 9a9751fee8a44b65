"""`bigbigan pipeline`: every stage in one command, one report (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bigbigan.cli import args as groups
from bigbigan.errors import UsageError
from bigbigan.runtimes import registry

NAME = "pipeline"
HELP = "every stage, one command, one report"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    groups.checkpoint(p, "default: the shipped model")
    groups.out(p, "folder", "folder for report.md, report.json, grid.png", default="out/pipeline")
    targets = ",".join(("onnx", *registry.targets(), "auto"))  # onnx: the plain export
    p.add_argument(
        "--targets",
        default="onnx,ort,aoti",
        help=f"some of {targets}; auto: the CPU artefact `compile --target auto` keeps here "
        "(the fastest within --tolerance), with why in the report",
    )
    groups.batch(p, 256, "images per stage")
    groups.timing(p, loop=5, warmup=None)
    groups.device(p)
    groups.tolerance(p, 1e-4, "mean")
    p.add_argument("--model", help="instead of a checkpoint: your model (.pb or .onnx)")
    p.add_argument("--input", help="with --model: your input folder (fake_image.bin, label.bin)")
    p.add_argument("--reference", help="with --model: your reference output (gpu_out.bin)")
    return p


def run(args: argparse.Namespace) -> None:
    from bigbigan.pipeline import pipeline
    from bigbigan.shipped import shipped_checkpoint

    groups.torch_device(args.device)
    if args.model is not None:
        _pipeline_model(args)
        return
    if args.input or args.reference:
        raise UsageError("--input and --reference go with --model (a model you bring)")
    pipeline(
        args.checkpoint or shipped_checkpoint(),
        args.out,
        targets=args.targets.split(","),
        batch=args.batch,
        loop=args.loop,
        device=args.device,
        tolerance=args.tolerance,
    )
    print(f"report: {Path(args.out) / 'report.md'} (and report.json)")
    print(f"images: {Path(args.out) / 'grid.png'}")


def _pipeline_model(args: argparse.Namespace) -> None:
    """The chain on a model the user brings (docs/import.md)."""
    from bigbigan.pipeline import pipeline_model

    if args.checkpoint or not (args.input and args.reference):
        raise UsageError("--model: give --input and --reference (your files) and no --checkpoint")
    pipeline_model(
        args.model,
        args.out,
        inputs=args.input,
        reference=args.reference,
        targets=args.targets.split(","),
        loop=args.loop,
        device=args.device,
        tolerance=args.tolerance,
    )
    print(f"report: {Path(args.out) / 'report.md'} (and report.json)")
    print(f"images: {Path(args.out) / 'grid.png'}")
