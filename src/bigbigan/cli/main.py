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
    from bigbigan.model.networks import BigBiGAN, count_parameters, generator_flops
    from bigbigan.training.loop import model_config_for

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


def _train(args: argparse.Namespace) -> int | None:
    from bigbigan.config import TrainConfig
    from bigbigan.training import distributed
    from bigbigan.training.loop import model_config_for, train

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
    if args.nproc:
        return distributed.relaunch(args.nproc, distributed.forwarded_argv("train", vars(args)))
    with distributed.process_group(args.device) as replicas:
        device = args.device if replicas is None else replicas.device
        train(
            cfg,
            model_cfg,
            args.out,
            resume=args.resume,
            device=device,
            replicas=replicas,
            sync_bn=args.sync_bn,
        )
    return None


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


def _generate(args: argparse.Namespace) -> int | None:
    from bigbigan.generate import generate
    from bigbigan.inputs import input_files

    if args.shard_out is not None or args.count is not None:
        return _generate_shards(args)
    if args.nproc:
        raise BigBiGANError("--nproc: only with --count and --shard-out (sharded generation)")
    if args.input is None or args.out is None:
        raise BigBiGANError("--input and --out are required (or --count and --shard-out)")
    images = generate(
        args.checkpoint, input_files(args.input), args.out, device=args.device, encoder=args.encoder
    )
    print(f"wrote {args.out}: {images.dtype} {list(images.shape)}")
    return None


def _generate_shards(args: argparse.Namespace) -> int | None:
    from bigbigan.generate import generate_shards
    from bigbigan.training import distributed

    if args.shard_out is None or args.count is None:
        raise BigBiGANError("--count and --shard-out go together (sharded generation)")
    if args.input is not None or args.out is not None or args.encoder:
        raise BigBiGANError("--shard-out: generates its own inputs; drop --input, --out, --encoder")
    if args.nproc:
        return distributed.relaunch(args.nproc, distributed.forwarded_argv("generate", vars(args)))
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
        rewrite=args.rewrite,
    )
    print(f"wrote {report.path} ({report.target}, {report.precision}, {report.seconds:.1f} s)")
    if report.max_abs_diff is not None:
        print(f"  max abs diff vs the source ONNX: {report.max_abs_diff:.3g}")
    if report.command:
        print(report.command)
    if report.note:
        print(f"  note: {report.note}")


def _infer(args: argparse.Namespace) -> None:
    from bigbigan.infer import format_summary, infer, spread_warning

    result = infer(
        args.model,
        [item for item in args.input.split(",") if item] if args.input else None,
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


def _usage_error(command: str, message: str) -> int:
    """A bad combination of flags: argparse's format and exit status 2."""
    print(f"bigbigan {command}: error: {message}", file=sys.stderr)
    return 2


_LAYERWISE_ONLY = ("checkpoint", "input", "batch", "layerwise_memory", "threads")


def _compare(args: argparse.Namespace) -> int:
    from bigbigan.compare.files import parse_tolerances

    if args.tolerance is not None and (args.atol or args.rtol):
        return _usage_error("compare", "--tolerance is --atol with --statistic mean; give one")
    if args.layerwise and args.others:
        return _usage_error("compare", "--layerwise takes one ONNX model, no other files")
    if not args.layerwise:
        if not args.others:
            return _usage_error("compare", "give the reference and at least one file to compare")
        given = [f"--{k.replace('_', '-')}" for k in _LAYERWISE_ONLY if getattr(args, k)]
        if given:
            return _usage_error("compare", f"{', '.join(given)} only apply with --layerwise")
    statistic = args.statistic or ("mean" if args.tolerance is not None else "elementwise")
    if args.tolerance is not None:
        args.atol = [str(args.tolerance)]
    if args.layerwise:
        from bigbigan.compare.layerwise import DEFAULT_ATOL, DEFAULT_RTOL

        tolerances = parse_tolerances(
            args.atol or [],
            args.rtol or [],
            statistic=statistic,
            quantile=args.quantile,
            default_atol=DEFAULT_ATOL,
            default_rtol=DEFAULT_RTOL,
        )
        return _compare_layerwise(args, tolerances)
    checked = bool(args.atol or args.rtol)
    tolerances = parse_tolerances(
        args.atol or [], args.rtol or [], statistic=statistic, quantile=args.quantile
    )
    return _compare_files(args, tolerances if checked else None, statistic)


def _compare_files(args: argparse.Namespace, tolerances, statistic: str) -> int:
    from bigbigan.compare.files import (
        compare_arrays,
        default_names,
        format_report,
        is_image_batch,
        load_outputs,
        save_error_maps,
        save_side_by_side,
        summarize_files,
        validate_files,
    )
    from bigbigan.fsutil import write_text

    files = [args.reference, *args.others]
    names = args.names.split(",") if args.names else default_names(files)
    if len(names) != len(files):
        raise BigBiGANError(f"--names: {len(names)} name(s) for {len(files)} files")
    if tolerances is not None:
        known = set(names[1:]) | {Path(f).stem for f in files[1:]}
        tolerances.check_names(known | {Path(f).name for f in files[1:]})
    arrays = load_outputs(files)
    summaries = summarize_files(arrays, names, files)
    results = compare_arrays(
        arrays,
        names,
        files,
        statistic=statistic,
        tolerances=tolerances,
        validate=args.validate,
    )
    bad_files = validate_files(summaries) if args.validate else []
    grid = args.grid if args.grid and is_image_batch(arrays[0]) else None
    if grid:
        save_side_by_side(arrays, names, grid)
        save_error_maps(arrays, results, grid)
    failed = bool(bad_files) or any(r.passed is False for r in results)
    checked = tolerances is not None or args.validate
    report = {
        "schema": "bigbigan-compare",
        "schema_version": 1,
        "reference": files[0],
        "files": [f.to_json() for f in summaries],
        "pairs": [r.to_json() for r in results],
        "validate": bad_files if args.validate else None,
        "grid": grid,
        "passed": (not failed) if checked else None,
    }
    if args.summary:
        write_text(args.summary, json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(summaries, results, names[0]))
        for line in bad_files:
            print(f"NaN/Inf: {line}")
        if args.grid:
            print(f"grid: {grid}" if grid else f"grid: not written ({files[0]} is not images)")
        if checked:
            print("PASS" if not failed else "FAIL")
    return 1 if failed else 0


def _compare_layerwise(args: argparse.Namespace, tolerances) -> int:
    from bigbigan.compare.layerwise import DEFAULT_MEMORY_MB, format_report, layerwise
    from bigbigan.fsutil import write_text

    report = layerwise(
        args.reference,
        checkpoint=args.checkpoint,
        inputs=[item for item in args.input.split(",") if item] if args.input else None,
        batch=args.batch,
        seed=args.seed,
        tolerances=tolerances,
        memory_mb=args.layerwise_memory or DEFAULT_MEMORY_MB,
        device=args.device,
        threads=args.threads,
        progress=None if args.json else lambda text: print(text, file=sys.stderr),
    )
    if args.summary:
        write_text(args.summary, json.dumps(report.to_json(), indent=2) + "\n")
    print(json.dumps(report.to_json()) if args.json else format_report(report))
    return 0 if report.passed else 1


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected zero or a positive integer, found {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, found {text}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, found {text}")
    return value


def _pipeline(args: argparse.Namespace) -> None:
    from bigbigan.pipeline import pipeline
    from bigbigan.shipped import shipped_checkpoint

    pipeline(
        args.checkpoint or shipped_checkpoint(),
        args.out,
        targets=args.targets.split(","),
        batch=args.batch,
        loop=args.loop,
        device=args.device,
        tolerance=args.tolerance,
    )
    print(f"report: {Path(args.out) / 'report.md'} (and report.json)")
    print(f"images: {Path(args.out) / 'grid.png'}")


def _evaluate(args: argparse.Namespace) -> None:
    from bigbigan.quality.evaluate import evaluate, format_report
    from bigbigan.shipped import shipped_checkpoint

    result = evaluate(
        args.checkpoint or shipped_checkpoint(),
        classifier_path=args.classifier,
        n=args.n,
        seed=args.seed,
        data_dir=args.data_dir,
        out_dir=args.out,
        device=args.device,
        batch_size=args.batch_size,
    )
    print(json.dumps(result, indent=2) if args.json else format_report(result))


def _train_classifier(args: argparse.Namespace) -> None:
    import torch

    from bigbigan.quality.classifier import train_classifier

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = train_classifier(
        args.dataset,
        args.data_dir,
        args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
    )
    print(f"wrote {report.path}: test accuracy {report.test_accuracy:.4f}")


def _bench(args: argparse.Namespace) -> None:
    from bigbigan.bench import (
        BACKENDS,
        DEFAULT_STREAMS,
        PRECISIONS,
        bench,
        format_table,
        parse_batch_sizes,
        parse_names,
    )

    def log(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    result = bench(
        args.checkpoint,
        ch=args.ch,
        batch_sizes=parse_batch_sizes(args.batch_sizes),
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        backends=parse_names(args.backends, BACKENDS, "--backends"),
        precisions=parse_names(args.precisions, PRECISIONS, "--precisions"),
        threads=args.threads,
        micro_batch=args.micro_batch,
        streams=DEFAULT_STREAMS if args.streams is None else args.streams,
        out=args.out,
        classifier=args.classifier,
        log=log,
    )
    if args.json:
        print(json.dumps(result.to_json()))
        return
    print(format_table(result.rows, result.meta["ratio_reference"]))
    for item in result.skipped:
        print(f"skipped {item['backend']} {item['precision']}: {item['reason']}")
    print(f"json: {result.json_path}\nchart: {result.chart_path}")


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
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="several processes: batch-norm statistics over the global batch (default: per rank)",
    )
    p.add_argument(
        "--nproc",
        type=_positive,
        help="run as N processes on this node through torchrun (--batch-size is the global batch)",
    )

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
    p.add_argument("--input", help="make-inputs directory or a.bin,b.bin")
    p.add_argument("--out", help="output .bin (NHWC float32)")
    p.add_argument("--device", default="cpu", help="cpu, cuda (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--encoder", action="store_true", help="run the encoder instead")
    p.add_argument("--count", type=_positive, help="sharded: generate samples 0..COUNT-1")
    p.add_argument("--shard-out", help="sharded: directory for shards and manifest.json")
    p.add_argument("--shard-size", type=_positive, default=1000, help="sharded: samples a shard")
    p.add_argument("--seed", type=int, default=0, help="sharded: noise seed (sample j: [seed, j])")
    p.add_argument("--batch", type=_positive, default=256, help="sharded: generator batch")
    p.add_argument("--threads", type=_positive, default=1, help="sharded: CPU threads a process")
    p.add_argument("--nproc", type=_positive, help="sharded: run as N processes via torchrun")

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
    p.add_argument(
        "--no-rewrite",
        dest="rewrite",
        action="store_false",
        help="fp32 ort/aoti: keep the upsampling as exported (default: rewrite it, exactly, "
        "to transposed convolutions; see docs/performance.md)",
    )
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff vs the ONNX")

    p = command("infer", _infer, "run a model on .bin/.npy inputs and time it (msame's flags)")
    p.add_argument("--model", required=True, help=".onnx, .ort.onnx, .pt2, .engine or checkpoint")
    p.add_argument(
        "--input",
        help="a.bin,b.npy in model input order, or x2:b.bin,x1:a.bin by name, or folders of "
        "per-sample files (one per input), or a make-inputs folder; default: seeded synthetic",
    )
    p.add_argument("--output", help="output directory (msame's files); default: write none")
    p.add_argument("--outfmt", default="BIN", type=str.upper, choices=("BIN", "TXT"))
    p.add_argument("--batch", type=_positive, help="synthetic/folder inputs (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    p.add_argument("--warmup", type=_non_negative, default=0, help="untimed runs first")
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--loop", type=_positive, help="timed runs (default 1)")
    runs.add_argument("--duration", type=_seconds, help="time runs for this many seconds")
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", help="force a backend: torch, onnxruntime, aoti, tensorrt")
    p.add_argument("--threads", type=_positive, help="CPU threads (per copy with --streams)")
    p.add_argument(
        "--streams",
        type=_positive,
        default=1,
        help="split each batch across N copies of the model, one thread each (CPU throughput)",
    )
    p.add_argument(
        "--micro-batch",
        type=_non_negative,
        default=0,
        help="run larger batches in slices of N (AOTInductor: faster per image; 0: off)",
    )
    p.add_argument("--summary", help="also write the JSON summary here")

    from bigbigan.compare.statistics import STATISTICS

    p = command(
        "compare",
        _compare,
        "compare output files with a reference (getAcc), or an ONNX model with PyTorch "
        "layer by layer; exit 0 pass, 1 fail, 2 bad usage",
    )
    p.add_argument("reference", help="reference .bin/.npy (or, with --layerwise, the .onnx)")
    p.add_argument("others", nargs="*", help="files to compare with it")
    p.add_argument("--names", help="comma-separated labels, reference first")
    p.add_argument("--grid", help="PNG with the first 8 images of every file (+ error heat-maps)")
    p.add_argument("--atol", action="append", help="absolute tolerance: 1e-5 or NAME:1e-4")
    p.add_argument("--rtol", action="append", help="relative tolerance: 1e-3 or NAME:1e-2")
    p.add_argument("--statistic", choices=STATISTICS, help="how |diff| is reduced")
    p.add_argument("--quantile", type=float, default=0.99, help="for --statistic quantile")
    p.add_argument("--tolerance", type=float, help="fail (exit 1) above this mean abs diff")
    p.add_argument("--validate", action="store_true", help="fail on NaN/Inf in any file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--summary", help="also write the JSON report here")
    p.add_argument("--layerwise", action="store_true", help="first layer where ONNX != PyTorch")
    p.add_argument("--checkpoint", help="layerwise: default from the ONNX sidecar")
    p.add_argument("--input", help="layerwise: inputs as for infer (default: synthetic)")
    p.add_argument("--batch", type=_positive, help="layerwise: synthetic batch (default 256)")
    p.add_argument("--seed", type=int, default=0, help="layerwise: synthetic input seed")
    p.add_argument("--layerwise-memory", type=_seconds, help="layerwise: MB per chunk (512)")
    p.add_argument("--device", default="cpu", help="layerwise: cpu or cuda")
    p.add_argument("--threads", type=_positive, help="layerwise: CPU threads")

    p = command("evaluate", _evaluate, "quality metrics of a checkpoint (label accuracy, FID...)")
    p.add_argument("--checkpoint", default=None, help="default: the shipped model")
    p.add_argument("--classifier", help="default: models/classifier_<dataset>")
    p.add_argument("--n", type=_positive, default=10000, help="generated images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    p.add_argument("--out", help="directory for evaluation.json and image grids")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=_positive, default=500)
    p.add_argument("--json", action="store_true")

    p = command("train-classifier", _train_classifier, "train the evaluation classifier")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=_positive, default=8)
    p.add_argument("--batch-size", type=_positive, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive, help="torch CPU threads (results depend on it)")
    p.add_argument("--device", default="cpu")

    p = command("pipeline", _pipeline, "every stage, one command, one report")
    p.add_argument("--checkpoint", default=None, help="default: the shipped model")
    p.add_argument("--out", default="out/pipeline")
    p.add_argument("--targets", default="onnx,ort,aoti", help="onnx,ort,aoti,tensorrt,ascend")
    p.add_argument("--batch", type=_positive, default=256)
    p.add_argument("--loop", type=_positive, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max mean abs diff per stage")
    p = command("bench", _bench, "every backend and precision side by side: speed and accuracy")
    p.add_argument("--checkpoint", help="default: random weights at --ch")
    p.add_argument("--ch", type=_positive, default=64, help="random weights: base width")
    p.add_argument("--batch-sizes", default="1,16,256")
    p.add_argument("--repeats", type=_positive, default=10, help="timed calls per row")
    p.add_argument("--warmup", type=_non_negative, default=2, help="untimed calls per row")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--backends", help="subset of torch,onnxruntime,ort,aoti,openvino,cudagraph")
    p.add_argument("--precisions", help="subset of fp32,bf16,fp16,int8 (default: all)")
    p.add_argument("--threads", type=_positive, help="CPU threads of every backend")
    p.add_argument("--micro-batch", type=_non_negative, default=32, help="aoti slices; 0: off")
    p.add_argument(
        "--streams",
        type=_non_negative,
        help="ONNX Runtime rows also as N single-thread copies (default: one per core; 0: off)",
    )
    p.add_argument("--classifier", help="evaluation classifier for label accuracy")
    p.add_argument("--out", default="out/bench", help="bench.json, bench.png, artifacts/")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")
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
