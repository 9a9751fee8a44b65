"""`bigbigan infer`: msame's offline run (same flags, same files), timed."""

from __future__ import annotations

import argparse
import sys

from bigbigan.cli import args as groups
from bigbigan.runtimes import registry

NAME = "infer"
HELP = "run a model on .bin/.npy inputs and time it (msame's flags)"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    p.add_argument(
        "--model", required=True, help=".onnx, .ort, .pt2, .engine, .xml, checkpoint or TF .pb"
    )
    groups.inputs(p)
    p.add_argument(
        "--out",
        "--output",
        dest="output",
        metavar="DIR",
        help="output folder (msame's --output and files); default: write none",
    )
    p.add_argument(
        "--outfmt", default="BIN", type=str.upper, choices=("BIN", "TXT", "NPY"), help="file format"
    )
    groups.batch(p, None, "synthetic/folder inputs (default: the model's static batch, else 256)")
    groups.seed(p, "seed of the synthetic inputs")
    groups.timing(p, loop=None, warmup=0, duration=True, note=" (default 1)")
    groups.device(p)
    p.add_argument("--backend", help=f"force a backend: {', '.join(registry.runners())}")
    groups.threads(p, "CPU threads (per copy with --streams)")
    p.add_argument(
        "--streams",
        type=groups.positive,
        default=1,
        help="split each batch across N copies of the model, one thread each (CPU throughput)",
    )
    p.add_argument(
        "--micro-batch",
        type=groups.non_negative,
        default=0,
        help="run larger batches in slices of N (AOTInductor: faster per image; 0: off)",
    )
    groups.summary(p, "also write the JSON summary here")
    p.add_argument(
        "--trust-model",
        action="store_true",
        help="load a .pt2 this bigbigan did not compile (it runs its own code: trust its source)",
    )
    return p


def run(args: argparse.Namespace) -> None:
    from bigbigan.harness.summary import format_summary, spread_warning
    from bigbigan.infer import infer
    from bigbigan.runtimes import trust

    if args.trust_model:
        trust.vouch(args.model)
    result = infer(
        args.model,
        groups.split_list(args.input),
        args.output,
        outfmt=args.outfmt,
        loop=args.loop,
        duration=args.duration,
        warmup=args.warmup,
        batch=args.batch,
        seed=args.seed,
        device=args.device,
        backend=args.backend,
        threads=args.threads,
        streams=args.streams,
        micro_batch=args.micro_batch,
        summary=args.summary,
    )
    print(format_summary(result))
    warning = spread_warning(result)
    if warning:
        print(f"bigbigan infer: {warning}", file=sys.stderr)
