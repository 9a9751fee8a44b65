"""`bigbigan bench`: every backend and precision side by side on the same inputs."""

from __future__ import annotations

import argparse
import json
import sys

from bigbigan.cli import args as groups
from bigbigan.runtimes import registry

NAME = "bench"
HELP = "every backend and precision side by side: speed and accuracy"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    groups.checkpoint(p, "default: random weights at --ch")
    p.add_argument("--ch", type=groups.positive, default=64, help="random weights: base width")
    p.add_argument("--batch-sizes", default="1,16,256", help="the batches to time, comma-separated")
    groups.timing(p, loop=10, warmup=2, note=" per row")
    groups.device(p)
    p.add_argument("--backends", help=f"subset of {','.join(registry.bench_backends())}")
    p.add_argument("--precisions", help="subset of fp32,bf16,fp16,int8 (default: all)")
    groups.threads(p, "CPU threads of every backend")
    p.add_argument(
        "--micro-batch", type=groups.non_negative, default=32, help="aoti slices; 0: off"
    )
    p.add_argument(
        "--streams",
        type=groups.non_negative,
        help="ONNX Runtime rows also as N single-thread copies (default: one per core; 0: off)",
    )
    p.add_argument("--classifier", help="evaluation classifier for label accuracy")
    p.add_argument(
        "--max-mean-diff",
        type=float,
        help="the accuracy bound of the row marked auto, the one compile --target auto would "
        "keep here (default 5e-3, as compile)",
    )
    groups.out(p, "folder", "folder for bench.json, bench.png, artifacts/", default="out/bench")
    groups.json_flag(p, "print the JSON instead of the table")
    return p


def run(args: argparse.Namespace) -> None:
    from bigbigan.bench import (
        DEFAULT_STREAMS,
        PRECISIONS,
        bench,
        bench_title,
        format_table,
        parse_batch_sizes,
        parse_names,
    )

    def log(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    from bigbigan.importers import resolve_checkpoint

    result = bench(
        resolve_checkpoint(args.checkpoint) if args.checkpoint else None,
        ch=args.ch,
        batch_sizes=parse_batch_sizes(args.batch_sizes),
        repeats=args.loop,
        warmup=args.warmup,
        device=args.device,
        backends=parse_names(args.backends, registry.bench_backends(), "--backends"),
        precisions=parse_names(args.precisions, PRECISIONS, "--precisions"),
        threads=args.threads,
        micro_batch=args.micro_batch,
        streams=DEFAULT_STREAMS if args.streams is None else args.streams,
        out=args.out,
        classifier=args.classifier,
        max_mean_diff=args.max_mean_diff,
        log=log,
    )
    if args.json:
        print(json.dumps(result.to_json()))
        return
    title = bench_title(result.meta)
    print(format_table(result.rows, result.meta["ratio_reference"], title, result.auto))
    for choice in result.auto:
        print(f"auto at batch {choice['batch']}: {choice['why']}")
    for item in result.skipped:
        print(f"skipped {item['backend']} {item['precision']}: {item['reason']}")
    print(f"json: {result.json_path}\nchart: {result.chart_path}")
