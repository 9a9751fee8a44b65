"""The `bigbigan` command: one subcommand per stage, each a thin call into one module."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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


def _make_inputs(args: argparse.Namespace) -> None:
    from bigbigan.inputs import make_inputs

    paths = make_inputs(
        args.out,
        batch=args.batch,
        seed=args.seed,
        num_classes=args.num_classes,
        z_dim=args.z_dim,
        dataset=args.dataset,
        data_dir=args.data_dir,
    )
    for path in paths:
        print(path)


def _generate(args: argparse.Namespace) -> None:
    from bigbigan.generate import generate
    from bigbigan.inputs import input_files

    images = generate(
        args.checkpoint, input_files(args.input), args.out, device=args.device, encoder=args.encoder
    )
    print(f"wrote {args.out}: {images.dtype} {list(images.shape)}")


def _export(args: argparse.Namespace) -> None:
    from bigbigan.export import export_onnx

    report = export_onnx(
        args.checkpoint,
        args.out,
        encoder=args.encoder,
        static_batch=args.static_batch,
        opset=args.opset,
        validate_batch=args.validate_batch,
        tolerance=args.tolerance,
    )
    print(
        f"wrote {report.path} (validated in ONNX Runtime vs PyTorch: "
        f"max abs diff {report.max_abs_diff:.3g}, mean abs diff {report.mean_abs_diff:.3g})"
    )


def _compile(args: argparse.Namespace) -> None:
    from bigbigan.compile import compile_model

    report = compile_model(
        args.model,
        target=args.target,
        out=args.out,
        precision=args.precision,
        device=args.device,
        checkpoint=args.checkpoint,
        batch=args.batch,
        max_batch=args.max_batch,
        soc_version=args.soc_version,
        ort_level=args.ort_level,
        tolerance=args.tolerance,
    )
    print(f"wrote {report.path} ({report.target}, {report.precision}, {report.seconds:.1f} s)")
    if report.max_abs_diff is not None:
        print(f"  max abs diff vs the source ONNX: {report.max_abs_diff:.3g}")
    if report.command:
        print(report.command)
    if report.note:
        print(f"  note: {report.note}")


def _infer(args: argparse.Namespace) -> None:
    from bigbigan.infer import format_summary, infer
    from bigbigan.inputs import input_files

    result = infer(
        args.model,
        input_files(args.input),
        args.output,
        outfmt=args.outfmt,
        loop=args.loop,
        device=args.device,
        backend=args.backend,
        threads=args.threads,
    )
    print(format_summary(result))


def _compare(args: argparse.Namespace) -> int:
    from bigbigan.compare import (
        compare_arrays,
        default_names,
        format_table,
        load_outputs,
        save_side_by_side,
    )

    files = [args.reference, *args.others]
    names = args.names.split(",") if args.names else default_names(files)
    if len(names) != len(files):
        raise BigBiGANError(f"--names: {len(names)} name(s) for {len(files)} files")
    arrays = load_outputs(files)
    results = compare_arrays(arrays, names, files, tolerance=args.tolerance)
    if args.grid:
        save_side_by_side(arrays, names, args.grid)
    if args.json:
        print(json.dumps({"reference": files[0], "pairs": [r.to_json() for r in results]}))
    else:
        print(format_table(results, names[0]))
        if args.grid:
            print(f"grid: {args.grid}")
    return 1 if any(r.passed is False for r in results) else 0


def _pipeline(args: argparse.Namespace) -> None:
    from bigbigan.pipeline import pipeline

    pipeline(
        args.checkpoint,
        args.out,
        targets=args.targets.split(","),
        batch=args.batch,
        loop=args.loop,
        device=args.device,
        tolerance=args.tolerance,
    )
    print(f"report: {Path(args.out) / 'report.md'} (and report.json)")
    print(f"images: {Path(args.out) / 'grid.png'}")


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

    p = command("make-inputs", _make_inputs, "write noise and label .bin files (or real images)")
    p.add_argument("--out", required=True, help="directory for fake_image.bin and label.bin")
    p.add_argument("--batch", type=_positive, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-classes", type=_positive, default=10)
    p.add_argument("--z-dim", type=_positive, default=100)
    p.add_argument("--dataset", help="write real test images (image.bin) for the encoder")
    p.add_argument("--data-dir")

    p = command("generate", _generate, "the PyTorch reference output of a checkpoint (gpu_out)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True, help="make-inputs directory or a.bin,b.bin")
    p.add_argument("--out", required=True, help="output .bin (NHWC float32)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--encoder", action="store_true", help="run the encoder instead")

    p = command("export", _export, "freeze the generator (or encoder) to validated ONNX")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="output .onnx")
    p.add_argument("--encoder", action="store_true")
    p.add_argument("--static-batch", type=_positive, help="fixed batch (default: dynamic)")
    p.add_argument("--opset", type=_positive, default=18)
    p.add_argument("--validate-batch", type=_positive, default=8, help="validation batch")
    p.add_argument("--tolerance", type=float, default=1e-5, help="max abs diff vs PyTorch")

    p = command("compile", _compile, "compile an ONNX model for a runtime (the original's atc)")
    p.add_argument("model", help="ONNX model from `bigbigan export`")
    p.add_argument("--target", required=True, choices=("ort", "aoti", "tensorrt", "ascend"))
    p.add_argument("--precision", default="fp32")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint", help="aoti: the checkpoint (default: from the ONNX sidecar)")
    p.add_argument("--batch", type=_positive, help="ascend: static batch (default 256)")
    p.add_argument("--max-batch", type=_positive, default=4096, help="aoti/tensorrt: largest batch")
    p.add_argument("--soc-version", default="Ascend310", help="ascend: atc --soc_version")
    p.add_argument(
        "--ort-level",
        default="all",
        choices=("basic", "extended", "all"),
        help="ort: optimisation level ('all' is tied to this CPU, 'extended' is portable)",
    )
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff vs the ONNX")

    p = command("infer", _infer, "run a model on .bin inputs (msame's flags)")
    p.add_argument("--model", required=True, help=".onnx, .ort.onnx, .pt2, .engine or checkpoint")
    p.add_argument("--input", required=True, help="a.bin,b.bin (model input order) or a folder")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--outfmt", default="BIN", type=str.upper, choices=("BIN", "TXT"))
    p.add_argument("--loop", type=_positive, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", help="force a backend: torch, onnxruntime, aoti, tensorrt")
    p.add_argument("--threads", type=_positive)

    p = command("compare", _compare, "compare output files with a reference (getAcc)")
    p.add_argument("reference", help="reference .bin (e.g. the PyTorch output)")
    p.add_argument("others", nargs="+", help="files to compare with it")
    p.add_argument("--names", help="comma-separated labels, reference first")
    p.add_argument("--grid", help="PNG with the first 8 images of every file")
    p.add_argument("--tolerance", type=float, help="fail (exit 1) above this mean abs diff")
    p.add_argument("--json", action="store_true")

    p = command("pipeline", _pipeline, "every stage, one command, one report")
    p.add_argument("--checkpoint", default=None, help="default: the shipped model")
    p.add_argument("--out", default="out/pipeline")
    p.add_argument("--targets", default="onnx,ort,aoti", help="onnx,ort,aoti,tensorrt,ascend")
    p.add_argument("--batch", type=_positive, default=256)
    p.add_argument("--loop", type=_positive, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max mean abs diff per stage")
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
