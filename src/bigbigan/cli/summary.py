"""`bigbigan summary`: parameter counts and generator FLOPs of an architecture, no weights."""

from __future__ import annotations

import argparse
import json

from bigbigan.cli import args as groups

NAME = "summary"
HELP = "parameter counts and generator FLOPs of an architecture"
_NAMES = {
    "G": "generator",
    "E": "encoder",
    "F": "discriminator F (x)",
    "H": "discriminator H (z)",
    "J": "discriminator J (x, z)",
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    groups.architecture(p)
    groups.json_flag(p)
    return p


def run(args: argparse.Namespace) -> None:
    from bigbigan import limits
    from bigbigan.model.networks import BigBiGAN, count_parameters, generator_flops
    from bigbigan.training.loop import model_config_for

    cfg = model_config_for(args.dataset, ch=args.ch, conditional=not args.unconditional)
    limits.check_memory(limits.model_bytes(cfg), f"--ch {cfg.ch}")
    model = BigBiGAN(cfg)
    counts = {name: count_parameters(getattr(model, name)) for name in _NAMES}
    gflop = generator_flops(cfg) / 1e9
    if args.json:
        print(json.dumps({**counts, "gflop_per_image": round(gflop, 6)}))
        return
    kind = "conditional" if cfg.conditional else "unconditional"
    print(f"BigBiGAN {kind}, {args.dataset} ({cfg.channels} channel(s)), ch={cfg.ch}")
    for key, count in counts.items():
        print(f"  {key}  {_NAMES[key]:<24} {count:>12,} parameters")
    print(f"  generator: {gflop:.3f} GFLOP per image ({gflop * 256:.1f} per batch of 256)")
