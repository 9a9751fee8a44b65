"""`bigbigan pipeline`: every stage in one command, one report (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bigbigan.cli import args as groups
from bigbigan.runtimes import registry

NAME = "pipeline"
HELP = "every stage, one command, one report"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    groups.checkpoint(p, "default: the shipped model")
    groups.out(p, "folder", "folder for report.md, report.json, grid.png", default="out/pipeline")
    targets = ",".join(("onnx", *registry.targets()))  # onnx: the plain export
    p.add_argument("--targets", default="onnx,ort,aoti", help=targets)
    groups.batch(p, 256, "images per stage")
    groups.timing(p, loop=5, warmup=None)
    groups.device(p)
    groups.tolerance(p, 1e-4, "mean")
    return p


def run(args: argparse.Namespace) -> None:
    from bigbigan.pipeline import pipeline
    from bigbigan.shipped import shipped_checkpoint

    groups.torch_device(args.device)
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
