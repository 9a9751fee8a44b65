"""The `bigbigan` command: one subcommand per stage, each a thin call into one module."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from bigbigan.errors import BigBiGANError

Command = Callable[[argparse.Namespace], int | None]


def _summary(args: argparse.Namespace) -> None:
    from bigbigan.models import BigBiGAN, count_parameters, generator_flops
    from bigbigan.train import model_config_for

    cfg = model_config_for(args.dataset, ch=args.ch, conditional=not args.unconditional)
    model = BigBiGAN(cfg)
    counts = {name: count_parameters(getattr(model, name)) for name in "GEFHJ"}
    gflop = generator_flops(cfg) / 1e9
    if args.json:
        print(json.dumps({**counts, "gflop_per_image": round(gflop, 6)}))
        return
    kind = "conditional" if cfg.conditional else "unconditional"
    print(f"BigBiGAN {kind}, {args.dataset} ({cfg.channels} channel(s)), ch={cfg.ch}")
    names = {"G": "generator", "E": "encoder", "F": "discriminator F (x)"}
    names |= {"H": "discriminator H (z)", "J": "discriminator J (x, z)"}
    for key, count in counts.items():
        print(f"  {key}  {names[key]:<24} {count:>12,} parameters")
    print(f"  generator: {gflop:.3f} GFLOP per image ({gflop * 256:.1f} per batch of 256)")


def _train(args: argparse.Namespace) -> None:
    from bigbigan.config import TrainConfig
    from bigbigan.train import model_config_for, train

    cfg = TrainConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        epochs=args.epochs,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        amp=args.amp,
        sample_every=args.sample_every,
    )
    model_cfg = model_config_for(
        args.dataset, ch=args.ch, conditional=not args.unconditional, init=args.init
    )
    train(cfg, model_cfg, args.out, resume=args.resume, device=args.device)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bigbigan", description="BigBiGAN from training to fast, verified offline inference."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Command, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def architecture(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", default="fashion_mnist", help="sets channels and init")
        p.add_argument("--ch", type=_positive, default=64, help="base width (reference: 64)")
        p.add_argument("--unconditional", action="store_true", help="no class conditioning")

    p = command("summary", _summary, "parameter counts and generator FLOPs of an architecture")
    architecture(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command("train", _train, "train a BigBiGAN (resumable)")
    architecture(p)
    p.add_argument("--data-dir", help="dataset directory (fashion_mnist: Debian's by default)")
    p.add_argument("--out", required=True, help="run directory: checkpoint, samples, log")
    p.add_argument("--batch-size", type=_positive, default=256)
    p.add_argument("--epochs", type=_positive, default=50)
    p.add_argument("--steps", type=_positive, help="total G/E steps (overrides --epochs)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=("normal", "orthogonal"), help="default: by dataset")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--sample-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except BigBiGANError as e:
        print(f"bigbigan {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
