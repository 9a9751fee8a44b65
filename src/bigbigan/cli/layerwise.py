"""`bigbigan layerwise`: the first layer where an ONNX model parts from PyTorch
(also reachable as `bigbigan compare MODEL.onnx --layerwise`, which shares these flags)."""

from __future__ import annotations

import argparse
import json
import sys

from bigbigan.cli import args as groups
from bigbigan.errors import UsageError

NAME = "layerwise"
HELP = "the first layer where an ONNX model parts from PyTorch; exit 0 pass, 1 fail, 2 bad usage"
# The flags that only mean something for a layerwise search (compare rejects them otherwise).
ONLY = ("checkpoint", "input", "batch", "layerwise_memory", "threads")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    p.add_argument("reference", metavar="model", help="the exported .onnx")
    groups.tolerances(p)
    groups.json_flag(p)
    groups.summary(p)
    add_search_arguments(p)
    return p


def add_search_arguments(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The search's own flags; `compare` adds them with the prefix "layerwise: "."""
    groups.checkpoint(p, f"{prefix}default from the ONNX sidecar")
    groups.inputs(p, f"{prefix}as for infer")
    groups.batch(p, None, f"{prefix}synthetic batch (default 256)")
    groups.seed(p, f"{prefix}synthetic input seed")
    p.add_argument(
        "--memory",
        "--layerwise-memory",
        dest="layerwise_memory",
        metavar="MB",
        type=groups.seconds,
        help=f"{prefix}MB of activations per chunk (default 512)",
    )
    groups.device(p, f"{prefix}the PyTorch side and ONNX Runtime")
    groups.threads(p, f"{prefix}CPU threads")


def run(args: argparse.Namespace) -> int:
    return search(args, tolerances(args))


def tolerances(args: argparse.Namespace, layerwise: bool = True):
    """--atol/--rtol/--statistic/--tolerance as one `Tolerances` (--tolerance T is --atol T
    --statistic mean); the layerwise search has its own default tolerances."""
    from bigbigan.compare.tolerances import parse_tolerances

    if args.tolerance is not None and (args.atol or args.rtol):
        raise UsageError("--tolerance is --atol with --statistic mean; give one")
    statistic = args.statistic or ("mean" if args.tolerance is not None else "elementwise")
    atol = [str(args.tolerance)] if args.tolerance is not None else (args.atol or [])
    defaults = {}
    if layerwise:
        from bigbigan.compare.layerwise import DEFAULT_ATOL, DEFAULT_RTOL

        defaults = {"default_atol": DEFAULT_ATOL, "default_rtol": DEFAULT_RTOL}
    return parse_tolerances(
        atol, args.rtol or [], statistic=statistic, quantile=args.quantile, **defaults
    )


def search(args: argparse.Namespace, tolerances) -> int:
    from bigbigan.compare.layerwise import DEFAULT_MEMORY_MB, layerwise
    from bigbigan.compare.report import format_layerwise, layerwise_document
    from bigbigan.fsutil import write_text

    groups.torch_device(args.device)
    report = layerwise(
        args.reference,
        checkpoint=args.checkpoint,
        inputs=groups.split_list(args.input),
        batch=args.batch,
        seed=args.seed,
        tolerances=tolerances,
        memory_mb=args.layerwise_memory or DEFAULT_MEMORY_MB,
        device=args.device,
        threads=args.threads,
        progress=None if args.json else lambda text: print(text, file=sys.stderr),
    )
    document = layerwise_document(report)
    if args.summary:
        write_text(args.summary, json.dumps(document, indent=2) + "\n")
    print(json.dumps(document) if args.json else format_layerwise(report))
    return 0 if report.passed else 1
