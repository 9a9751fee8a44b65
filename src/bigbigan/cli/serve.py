"""`bigbigan serve`: a local demo page on the compiled model (Gradio: the `serve` extra)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bigbigan.cli import args as groups

NAME = "serve"
HELP = "a local demo page on the compiled model (pip install -e '.[serve]')"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    groups.checkpoint(p, "default: the shipped model")
    p.add_argument("--model", help="generator file to run (default: compiled at start-up, ort)")
    p.add_argument("--classifier", help="default: models/classifier_<dataset>")
    p.add_argument("--no-classifier", action="store_true", help="do not read classes")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes it to the network")
    p.add_argument("--port", type=groups.positive, default=7860, help="port to listen on")
    return p


def run(args: argparse.Namespace) -> None:
    from bigbigan.serve.app import serve  # Gradio is imported only once the page starts
    from bigbigan.shipped import shipped_checkpoint

    serve(
        checkpoint=Path(args.checkpoint) if args.checkpoint else shipped_checkpoint(),
        model=Path(args.model) if args.model else None,
        classifier=Path(args.classifier) if args.classifier else None,
        read_classes=not args.no_classifier,
        host=args.host,
        port=args.port,
    )
