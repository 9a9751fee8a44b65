"""`bigbigan evaluate`: the quality metrics of a checkpoint (label accuracy, FID, probes)."""

from __future__ import annotations

import argparse
import json

from bigbigan.cli import args as groups
from bigbigan.training.sampling import TRUNCATION

NAME = "evaluate"
HELP = "quality metrics of a checkpoint (label accuracy, FID...)"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    groups.checkpoint(p, "default: the shipped model")
    p.add_argument("--classifier", help="default: models/classifier_<dataset>")
    groups.count(p, 10000, "generated images")
    groups.alias(p, "--n", "count", type=groups.positive)
    groups.seed(p)
    groups.data(p)
    groups.out(p, "folder", "folder for evaluation.json and image grids")
    groups.device(p)
    groups.batch(p, 500, "images per forward pass", old="--batch-size")
    groups.json_flag(p, "print the result as JSON")
    p.add_argument("--live-weights", action="store_true", help="not the EMA copies of G and E")
    p.add_argument(
        "--truncation",
        type=float,
        default=TRUNCATION,
        help=f"bound on G's noise |z| (default {TRUNCATION:g}: training's); lower trades variety "
        "for typical images, and moves every generation figure",
    )
    p.add_argument(
        "--probe-train",
        type=groups.positive,
        help="fit the probes on a seeded subset of N training images (default: the whole "
        "training split, the paper's protocol; a subset is quicker and reads lower)",
    )
    return p


def run(args: argparse.Namespace) -> None:
    from bigbigan.quality.evaluate import evaluate
    from bigbigan.quality.report import format_report
    from bigbigan.shipped import shipped_checkpoint

    groups.torch_device(args.device)
    from bigbigan.importers import resolve_checkpoint

    result = evaluate(
        resolve_checkpoint(args.checkpoint) if args.checkpoint else shipped_checkpoint(),
        classifier_path=args.classifier,
        n=args.count,
        seed=args.seed,
        data_dir=args.data_dir,
        out_dir=args.out,
        device=args.device,
        batch_size=args.batch,
        live_weights=args.live_weights,
        probe_train=args.probe_train,
        truncation=args.truncation,
    )
    print(json.dumps(result, indent=2) if args.json else format_report(result))
