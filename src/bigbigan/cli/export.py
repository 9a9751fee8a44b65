"""`bigbigan export`: freeze the generator (or encoder) to ONNX, validated against PyTorch."""

from __future__ import annotations

import argparse

from bigbigan.cli import args as groups

NAME = "export"
HELP = "freeze the generator (or encoder) to validated ONNX"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    groups.checkpoint(p, required=True)
    groups.out(p, "file", "output .onnx", required=True)
    p.add_argument("--encoder", action="store_true", help="export the encoder instead")
    p.add_argument("--static-batch", type=groups.positive, help="fixed batch (default: dynamic)")
    p.add_argument("--opset", type=groups.positive, default=18, help="ONNX opset")
    p.add_argument(
        "--validate-batch", type=groups.positive, default=8, help="batch of the validation run"
    )
    groups.tolerance(p, 1e-5, "max")
    return p


def run(args: argparse.Namespace) -> None:
    from bigbigan.export import export_onnx

    groups.output_file(args.out)
    report = export_onnx(
        args.checkpoint,
        args.out,
        encoder=args.encoder,
        static_batch=args.static_batch,
        opset=args.opset,
        validate_batch=args.validate_batch,
        tolerance=args.tolerance,
    )
    print(
        f"wrote {report.path} (validated in ONNX Runtime vs PyTorch: "
        f"max abs diff {report.max_abs_diff:.3g}, mean abs diff {report.mean_abs_diff:.3g})"
    )
