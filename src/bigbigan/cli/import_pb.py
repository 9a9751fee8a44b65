"""`bigbigan import`: the original system's frozen TensorFlow `.pb` as a validated ONNX
(docs/import.md); with `--checkpoint-out`, a project checkpoint of G recovered from it too."""

from __future__ import annotations

import argparse

from bigbigan.cli import args as groups

NAME = "import"
HELP = "import a frozen TensorFlow .pb (the original's) as ONNX"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    p.add_argument("pb", help="frozen GraphDef, e.g. the original's bigbigan.pb")
    groups.out(p, "file", "output .onnx (sidecar .onnx.json beside it)", required=True)
    p.add_argument(
        "--batch-mode",
        default="auto",
        choices=("auto", "dynamic", "static"),
        help="auto: make a baked batch dynamic where provable, else keep it; dynamic: refuse "
        "when not provable; static: keep it",
    )
    p.add_argument("--opset", type=groups.positive, help="ONNX opset (default: tf2onnx's)")
    p.add_argument(
        "--checkpoint-out",
        help="also recover a project checkpoint of G here (a .pb of the reference generator)",
    )
    groups.tolerance(p, 1e-4, "max")
    return p


def run(args: argparse.Namespace) -> None:
    from bigbigan.importers.tensorflow import import_pb

    report = import_pb(
        args.pb,
        args.out,
        batch_mode=args.batch_mode,
        opset=args.opset,
        tolerance=args.tolerance,
        checkpoint_out=args.checkpoint_out,
    )
    print(report.one_line())
    for row in report.validation:
        print(
            f"  batch {row['batch']}: max abs diff {row['max_abs_diff']:.3g}, "
            f"mean {row['mean_abs_diff']:.3g}"
        )
    if report.checkpoint is not None:
        print(
            f"recovered checkpoint {report.checkpoint.directory} (G; PyTorch vs TensorFlow max "
            f"abs diff {report.checkpoint.max_abs_diff:.3g})"
        )
