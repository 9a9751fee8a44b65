"""`bigbigan train-classifier`: the evaluation classifier `evaluate` scores images with."""

from __future__ import annotations

import argparse

from bigbigan.cli import args as groups

NAME = "train-classifier"
HELP = "train the evaluation classifier"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    p.add_argument("--dataset", default="fashion_mnist", help="the images it learns to label")
    groups.data(p)
    groups.out(p, "folder", "folder for the classifier's weights and JSON", required=True)
    p.add_argument("--epochs", type=groups.positive, default=8, help="passes over the data")
    groups.batch(p, 128, "training batch", old="--batch-size")
    groups.seed(p)
    groups.threads(p, "torch CPU threads (results depend on it)")
    groups.device(p)
    return p


def run(args: argparse.Namespace) -> None:
    import torch

    from bigbigan.quality.classifier import train_classifier

    groups.torch_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = train_classifier(
        args.dataset,
        args.data_dir,
        args.out,
        epochs=args.epochs,
        batch_size=args.batch,
        seed=args.seed,
        device=args.device,
    )
    print(f"wrote {report.path}: test accuracy {report.test_accuracy:.4f}")
