"""`bigbigan generate`: the PyTorch reference output of a checkpoint (the original's gpu_out.bin),
or, with --count and --shard-out, many samples in verified shards across processes."""

from __future__ import annotations

import argparse

from bigbigan.cli import args as groups
from bigbigan.errors import BigBiGANError

NAME = "generate"
HELP = "the PyTorch reference output of a checkpoint (gpu_out)"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    groups.checkpoint(p, required=True)
    p.add_argument("--input", help="make-inputs folder or a.bin,b.bin")
    groups.out(p, "file", "output .bin (NHWC float32)")
    groups.device(p, "under torchrun: cuda:LOCAL_RANK")
    p.add_argument("--encoder", action="store_true", help="run the encoder instead")
    groups.count(p, None, "sharded: generate samples 0..COUNT-1")
    p.add_argument("--shard-out", metavar="DIR", help="sharded: folder for shards, manifest.json")
    p.add_argument(
        "--shard-size", type=groups.positive, default=1000, help="sharded: samples a shard"
    )
    groups.seed(p, "sharded: noise seed (sample j: [seed, j])")
    groups.batch(p, 256, "sharded: generator batch")
    groups.threads(p, "sharded: CPU threads a process", default=1)
    p.add_argument("--nproc", type=groups.positive, help="sharded: run as N processes via torchrun")
    return p


def run(args: argparse.Namespace) -> int | None:
    from bigbigan.generate import generate
    from bigbigan.inputs import input_files

    if args.shard_out is not None or args.count is not None:
        return _shards(args)
    if args.nproc:
        raise BigBiGANError("--nproc: only with --count and --shard-out (sharded generation)")
    if args.input is None or args.out is None:
        raise BigBiGANError("--input and --out are required (or --count and --shard-out)")
    groups.output_file(args.out)
    groups.torch_device(args.device)
    images = generate(
        args.checkpoint, input_files(args.input), args.out, device=args.device, encoder=args.encoder
    )
    print(f"wrote {args.out}: {images.dtype} {list(images.shape)}")
    return None


def _shards(args: argparse.Namespace) -> int | None:
    from bigbigan.generate import generate_shards
    from bigbigan.training import distributed

    if args.shard_out is None or args.count is None:
        raise BigBiGANError("--count and --shard-out go together (sharded generation)")
    if args.input is not None or args.out is not None or args.encoder:
        raise BigBiGANError("--shard-out: generates its own inputs; drop --input, --out, --encoder")
    if args.nproc:
        return distributed.relaunch(args.nproc, distributed.forwarded_argv(NAME, vars(args)))
    groups.torch_device(args.device)
    with distributed.process_group(args.device, backend="gloo") as replicas:
        report = generate_shards(
            args.checkpoint,
            args.shard_out,
            args.count,
            shard_size=args.shard_size,
            seed=args.seed,
            batch=args.batch,
            device=args.device if replicas is None else replicas.device,
            threads=args.threads,
            replicas=replicas,
        )
    if report.manifest is not None:
        print(
            f"{report.directory}: {report.shards} shard(s) of {args.count} samples "
            f"({len(report.generated)} written, {len(report.kept)} verified and kept); "
            f"manifest {report.manifest}"
        )
    return None
