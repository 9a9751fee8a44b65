"""`bigbigan make-inputs`: the noise and label .bin files (pic2bin.py), or real test images."""

from __future__ import annotations

import argparse

from bigbigan.cli import args as groups

NAME = "make-inputs"
HELP = "write noise and label .bin files (or real images)"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    groups.out(p, "folder", "folder for fake_image.bin and label.bin", required=True)
    groups.batch(p, 256, "samples in each file")
    groups.seed(p, "noise and label seed")
    p.add_argument("--num-classes", type=groups.positive, default=10, help="labels in [0, N)")
    p.add_argument("--z-dim", type=groups.positive, default=100, help="noise width")
    p.add_argument("--dataset", help="write real test images (image.bin) for the encoder")
    groups.data(p)
    p.add_argument(
        "--noise",
        default="truncated-normal",
        choices=("truncated-normal", "uniform"),
        help="truncated-normal (|z| <= 2, as in training; default) or uniform [0, 1) "
        "(the original pic2bin's)",
    )
    return p


def run(args: argparse.Namespace) -> None:
    from bigbigan.inputs import make_inputs

    paths = make_inputs(
        args.out,
        batch=args.batch,
        seed=args.seed,
        num_classes=args.num_classes,
        z_dim=args.z_dim,
        dataset=args.dataset,
        data_dir=args.data_dir,
        noise=args.noise,
    )
    for path in paths:
        print(path)
