"""`bigbigan train`: train a BigBiGAN into a resumable run folder (one process or torchrun)."""

from __future__ import annotations

import argparse

from bigbigan.cli import args as groups

NAME = "train"
HELP = "train a BigBiGAN (resumable)"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = groups.command(subparsers, NAME, HELP, run)
    groups.architecture(p)
    groups.data(p)
    groups.out(p, "folder", "run folder: checkpoint, samples, log", required=True)
    groups.batch(p, 256, "training batch (global, over every process)", old="--batch-size")
    p.add_argument("--epochs", type=groups.positive, default=50, help="passes over the data")
    p.add_argument("--steps", type=groups.positive, help="total G/E steps (overrides --epochs)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate")
    groups.seed(p)
    p.add_argument("--init", choices=("normal", "orthogonal"), help="default: by dataset")
    groups.device(p, "under torchrun: cuda:LOCAL_RANK")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--sample-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (architecture, data, schedule from its checkpoint)",
    )
    recipe(p)
    p.add_argument(
        "--keep-checkpoints",
        type=groups.positive,
        default=2,
        help="complete checkpoints the run keeps (docs/checkpoints.md)",
    )
    p.add_argument(
        "--keep-every",
        type=int,
        metavar="N",
        help="also keep the checkpoint of every N-th step for good, N a multiple of "
        "--sample-every (milestones to evaluate later; --resume keeps the run's N)",
    )
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="several processes: batch-norm statistics over the global batch (default: per rank)",
    )
    p.add_argument(
        "--nproc",
        type=groups.positive,
        help="run as N processes on this node through torchrun (--batch is the global batch)",
    )
    return p


def recipe(p: argparse.ArgumentParser) -> None:
    """Options towards BigBiGAN's own recipe (docs/quality.md); every default is the reference's."""
    from bigbigan.config import CBN_GAINS, OUTPUT_SN_LAYOUTS

    p.add_argument("--lr-d", type=float, help="discriminators' lr (default: --lr)")
    p.add_argument("--encoder-lr-mult", type=float, default=1.0, help="E's lr = --lr x this")
    p.add_argument(
        "--encoder-warmup",
        type=int,
        default=0,
        help="E's lr rises linearly to its full value over the first N steps (0: none)",
    )
    p.add_argument("--stochastic-encoder", action="store_true", help="E gives mu, softplus sigma")
    p.add_argument("--label-dropout", type=float, default=0.0, help="fraction trained unlabelled")
    p.add_argument("--ema", action="store_true", help="evaluate/export EMAs of G and E")
    p.add_argument("--ema-decay", type=float, default=0.999, help="with --ema")
    p.add_argument("--cbn-gain", choices=CBN_GAINS, default="gamma", help="CBN scale")
    p.add_argument("--encoder-ch", type=int, help="E's base width (default: --ch)")
    p.add_argument(
        "--encoder-label-loss",
        type=float,
        default=0.0,
        help="weight of E also predicting the real image's label from z (0: off)",
    )
    p.add_argument(
        "--output-sn",
        choices=OUTPUT_SN_LAYOUTS,
        default="transposed",
        help="G's output-layer spectral-norm matrix: the reference's transposed-conv layout or "
        "the conv layout of older checkpoints",
    )


def run(args: argparse.Namespace) -> int | None:
    from bigbigan.config import TrainConfig
    from bigbigan.training import distributed
    from bigbigan.training.checkpoint import Retention
    from bigbigan.training.loop import model_config_for, train

    cfg = TrainConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        batch_size=args.batch,
        epochs=args.epochs,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        amp=args.amp,
        sample_every=args.sample_every,
        lr_d=args.lr_d,
        encoder_lr_mult=args.encoder_lr_mult,
        encoder_warmup=args.encoder_warmup,
        ema_decay=args.ema_decay,
    )
    model_cfg = model_config_for(
        args.dataset,
        ch=args.ch,
        conditional=not args.unconditional,
        init=args.init,
        output_sn=args.output_sn,
        stochastic_encoder=args.stochastic_encoder,
        cbn_gain=args.cbn_gain,
        label_dropout=args.label_dropout,
        ema=args.ema,
        encoder_ch=args.encoder_ch,
        encoder_label_loss=args.encoder_label_loss,
    )
    if args.resume:
        from bigbigan.training.resume import as_options, recorded_keep_every, resume_configs

        cfg, model_cfg = resume_configs(args.out, args, args.given)
        vars(args).update(as_options(cfg, model_cfg))  # what --nproc workers are given
        if args.keep_every is None:  # the milestones the run was started with
            args.keep_every = recorded_keep_every(args.out)
    keep = Retention(args.keep_checkpoints, args.keep_every or 0)
    if args.nproc:
        return distributed.relaunch(args.nproc, distributed.forwarded_argv(NAME, vars(args)))
    groups.torch_device(args.device)
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
            keep=keep,
        )
    return None
