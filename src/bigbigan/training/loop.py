"""The reference training recipe, resumable to the bit.

Per generator/encoder step: `d_steps` discriminator steps on the same real batch with fresh
noise; the last of them also yields the scores that update G and E (as one gradient tape would).
Every epoch (and on Ctrl-C) the run directory gets an atomic checkpoint, a sample grid from fixed
noise and the loss log; a resumed run replays the same batches and noise as an unbroken one.
What a checkpoint holds of the run is in state.py, the log, grid and curves in outputs.py.

Under torchrun (`replicas`, see distributed.py) each rank trains on its slice of every global
batch with the same noise, dropout masks and averaged gradients; only rank 0 writes. Without
`replicas` nothing here differs from the single-process recipe, bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bigbigan import fsutil, limits
from bigbigan.config import ModelConfig, TrainConfig
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir
from bigbigan.model.networks import BigBiGAN
from bigbigan.training import checkpoint
from bigbigan.training.data import dataset_info, iterate_minibatches, load_dataset
from bigbigan.training.distributed import Replicas, deferred_interrupts
from bigbigan.training.losses import discriminator_loss, generator_encoder_loss
from bigbigan.training.outputs import LOG_FILE, LOSSES_FILE, plot_losses, trim_log
from bigbigan.training.sampling import truncated_normal
from bigbigan.training.state import Run, restore_run, save_run


def model_config_for(dataset: str, **overrides: object) -> ModelConfig:
    """The reference architecture for a dataset: channels, and normal init only for MNIST."""
    info = dataset_info(dataset)
    defaults = {
        "channels": info.channels,
        "num_classes": info.num_classes,
        "init": "normal" if dataset == "mnist" else "orthogonal",
    }
    return ModelConfig(**{**defaults, **{k: v for k, v in overrides.items() if v is not None}})


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffle of epoch `epoch` depends only on (seed, epoch): resuming replays it."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def make_optimizers(
    model: BigBiGAN, cfg: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam for the discriminators (lr_d) and for G and E (lr; E's times encoder_lr_mult).

    G and E share one parameter group unless E's lr differs or warms up, so that the optimizer
    state of runs made before those options existed still loads.
    """
    lr_d = cfg.lr if cfg.lr_d is None else cfg.lr_d
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=lr_d, betas=cfg.betas)
    groups: list[dict[str, Any]] = [{"params": model.generator_parameters()}]
    if cfg.encoder_lr_mult != 1.0 or cfg.encoder_warmup:
        groups = [
            {"params": list(model.G.parameters())},
            {"params": list(model.E.parameters()), "lr": cfg.encoder_lr},
        ]
    return opt_d, torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)


def warm_up_encoder(run: Run, cfg: TrainConfig) -> None:
    """Set E's lr for the G/E step about to be taken: (step + 1) / encoder_warmup of its full
    value until that reaches 1. A function of the step alone, so a resumed run replays it.

    Why: at the start the joint discriminator separates E's z from the prior at once, and E's
    cheapest answer is to scale z up along the discriminator's gradient; a full-rate E can win
    that race before the discriminator adapts (docs/quality.md, "A stable start").
    """
    if cfg.encoder_warmup:
        ramp = min(1.0, (run.step + 1) / cfg.encoder_warmup)
        run.opt_ge.param_groups[1]["lr"] = cfg.encoder_lr * ramp  # group 1: make_optimizers


def drop_labels(
    run: Run, y: torch.Tensor | None, replicas: Replicas | None = None
) -> torch.Tensor | None:
    """The labels with a `label_dropout` fraction replaced by the "no label" class.

    The mask comes from the noise stream (global batch, then this rank's slice), so it replays on
    resume; with no dropout nothing is drawn and the stream is as in the reference recipe.
    """
    cfg = run.model.cfg
    if y is None or cfg.label_dropout == 0:
        return y
    world = 1 if replicas is None else replicas.world_size
    mask = run.noise_rng.random(y.shape[0] * world) < cfg.label_dropout
    mask_t = torch.from_numpy(mask if replicas is None else replicas.shard(mask)).to(y.device)
    return torch.where(mask_t, torch.full_like(y, cfg.num_classes), y)


@torch.no_grad()
def update_ema(model: BigBiGAN, step: int, decay: float) -> None:
    """Move the EMA copies of G and E towards the live ones: parameters averaged with decay
    min(decay, (1 + step) / (10 + step)) (so early averages do not hold the initialisation),
    buffers (batch-norm statistics, spectral-norm vectors) copied."""
    rate = min(decay, (1 + step) / (10 + step))
    for average, live in model.ema_pairs():
        torch._foreach_lerp_(list(average.parameters()), list(live.parameters()), 1 - rate)
        for target, source in zip(average.buffers(), live.buffers(), strict=True):
            target.copy_(source)


def train_step(
    run: Run,
    x: torch.Tensor,
    y: torch.Tensor | None,
    cfg: TrainConfig,
    replicas: Replicas | None = None,
) -> dict[str, float]:
    """One generator/encoder step preceded by `cfg.d_steps` discriminator steps.

    With `replicas`, `x` and `y` are this rank's rows of the global batch; the noise is drawn for
    the global batch and sliced alike, and gradients are averaged over the ranks before each
    optimizer step. The losses returned are this rank's.
    """
    model = run.model
    batch = x.shape[0]
    world = 1 if replicas is None else replicas.world_size
    autocast = torch.autocast(x.device.type, torch.bfloat16, enabled=cfg.amp)
    d_params, ge_params = model.discriminator_parameters(), model.generator_parameters()
    labels = y
    for i in range(cfg.d_steps):
        last = i == cfg.d_steps - 1
        noise = truncated_normal(run.noise_rng, (batch * world, model.cfg.z_dim))
        z = torch.from_numpy(noise if replicas is None else replicas.shard(noise))
        z = z.to(x.device)
        y = drop_labels(run, labels, replicas)
        with autocast, torch.set_grad_enabled(last):
            fake, z_hat = model.G(z, y), model.E(x)
        with autocast:
            yy = None if y is None else torch.cat([y, y])
            scores = model.scores(torch.cat([x, fake]), torch.cat([z_hat, z]), yy)
        real = [s[:batch].float() for s in scores]
        fake_scores = [s[batch:].float() for s in scores]
        loss_d = discriminator_loss(real, fake_scores)
        run.opt_d.zero_grad(set_to_none=True)
        if not last:
            loss_d.backward()
            if replicas is not None:
                replicas.average_gradients(d_params)
            run.opt_d.step()
            continue
        loss_ge = generator_encoder_loss(real, fake_scores)
        objective_ge = loss_ge
        if model.E.classifier is not None:  # E also predicts the real images' labels
            label_ce = F.cross_entropy(model.E.classifier(z_hat.float()), labels)
            objective_ge = loss_ge + model.cfg.encoder_label_loss * label_ce
        grads_d = torch.autograd.grad(loss_d, d_params, retain_graph=True)
        grads_ge = torch.autograd.grad(objective_ge, ge_params, allow_unused=True)
        run.opt_ge.zero_grad(set_to_none=True)
        for p, g in zip([*d_params, *ge_params], [*grads_d, *grads_ge], strict=True):
            p.grad = g
        if replicas is not None:
            replicas.average_gradients([*d_params, *ge_params])
        run.opt_d.step()
        warm_up_encoder(run, cfg)
        run.opt_ge.step()
    if replicas is not None:
        replicas.sync_buffers(model)
    update_ema(model, run.step, cfg.ema_decay)
    losses = {"loss_d": loss_d.item(), "loss_ge": loss_ge.item()}
    if model.E.classifier is not None:
        losses["encoder_label_ce"] = label_ce.item()
    for name, r, f in zip(("x", "z", "xz"), real, fake_scores, strict=True):
        losses[f"s_{name}_real"], losses[f"s_{name}_fake"] = r.mean().item(), f.mean().item()
    return losses


def train(
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    out: str | Path,
    *,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    replicas: Replicas | None = None,
    sync_bn: bool = False,
    keep: checkpoint.Retention = checkpoint.DEFAULT_RETENTION,
) -> Path:
    """Train (or resume) a run in directory `out`; return the directory.

    `replicas` (from `distributed.process_group`) makes this one rank of a data-parallel run:
    `cfg.batch_size` is the global batch, `device` this rank's; only rank 0 writes to `out`,
    which every rank must be able to read to `resume`. `sync_bn` computes batch-norm statistics
    over the global batch instead of each rank's share (no effect in one process). `keep` says
    which checkpoints the run keeps. The writing process holds a lock on `out`: a second
    `train` into it is refused.
    """
    if keep.every and (not cfg.sample_every or keep.every % cfg.sample_every):
        raise BigBiGANError(
            f"--keep-every {keep.every}: expected a multiple of --sample-every "
            f"({cfg.sample_every or 'not set'}), the steps checkpoints are written at"
        )
    main = replicas is None or replicas.is_main
    out = ensure_dir(out) if main else Path(out)
    with fsutil.directory_lock(out) if main else contextlib.nullcontext():
        if main:
            checkpoint.clean(out)
        return _train_locked(cfg, model_cfg, out, resume, device, progress, replicas, sync_bn, keep)


def _train_locked(
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    out: Path,
    resume: bool,
    device: str | torch.device,
    progress: bool,
    replicas: Replicas | None,
    sync_bn: bool,
    keep: checkpoint.Retention,
) -> Path:
    """`train` inside the lock: start or restore the run, then step it to the end of its
    schedule, checkpointing at every epoch's end, every `sample_every` steps and on a stop."""
    main = replicas is None or replicas.is_main
    run, cfg, extra = _start_run(cfg, model_cfg, out, resume, device, replicas, sync_bn)
    images, labels, per_epoch = _training_images(cfg, model_cfg, device)
    total = cfg.steps if cfg.steps is not None else cfg.epochs * per_epoch
    log_path = out / LOG_FILE
    if main:
        trim_log(log_path, run.step)
    bar = tqdm(
        total=total,
        initial=run.step,
        disable=not (progress and main),
        unit="step",
        dynamic_ncols=True,
    )

    def save() -> None:
        if replicas is not None:
            replicas.check_identical(run.model)
        if main:
            save_run(run, cfg, out, extra, keep)

    # A Ctrl-C (or torchrun's SIGTERM) is a flag read after the step, so a checkpoint never
    # holds a half-done step; under torchrun the ranks agree on it first.
    signals = deferred_interrupts()
    started, stop = time.perf_counter(), False
    try:
        with (
            signals as stop_requested,
            log_path.open("a") if main else contextlib.nullcontext() as log,
        ):
            for epoch, end_of_epoch, x, y in _batches(run, cfg, images, labels, total, replicas):
                y_in = y if model_cfg.conditional else None
                losses = train_step(run, x, y_in, cfg, replicas)
                stop = stop_requested()
                if replicas is not None:
                    losses, stop = replicas.reduce_step(losses, stop)
                run.step += 1
                if main:
                    log.write(json.dumps({"step": run.step, "epoch": epoch, **losses}) + "\n")
                bar.update()
                bar.set_postfix(d=f"{losses['loss_d']:.3f}", ge=f"{losses['loss_ge']:.3f}")
                if not all(math.isfinite(v) for v in losses.values()):
                    raise BigBiGANError(f"training diverged at step {run.step}: {losses}")
                periodic = cfg.sample_every and run.step % cfg.sample_every == 0
                if end_of_epoch or periodic or run.step == total or stop:
                    if main:
                        log.flush()
                    save()
                if stop or run.step == total:
                    break
    finally:
        bar.close()
    if stop:
        raise BigBiGANError(
            f"interrupted at step {run.step}; checkpoint saved, continue with --resume --out {out}"
        )
    elapsed = time.perf_counter() - started
    if main:
        plot_losses(log_path, out / LOSSES_FILE)
    if progress and main:
        print(f"trained to step {run.step} in {elapsed:.0f} s; run directory {out}")
    return out


def _start_run(
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    out: Path,
    resume: bool,
    device: str | torch.device,
    replicas: Replicas | None,
    sync_bn: bool,
) -> tuple[Run, TrainConfig, dict[str, Any] | None]:
    """A new run seeded from `cfg.seed`, or the one in `out` restored with this call's schedule;
    under torchrun made a replica. Returns the run, the config to train with, and what the
    checkpoints add to checkpoint.json's "extra"."""
    main = replicas is None or replicas.is_main
    if not resume and (
        os.path.lexists(out / checkpoint.CONFIG_FILE) or checkpoint.step_folders(out)
    ):
        raise BigBiGANError(f"--out {out}: already holds a run; pass --resume or another --out")
    limits.check_memory(3 * limits.model_bytes(model_cfg), f"--ch {model_cfg.ch}")
    if cfg.amp and not str(device).startswith("cuda"):
        raise BigBiGANError("--amp needs --device cuda")
    torch.manual_seed(cfg.seed)
    model = BigBiGAN(model_cfg).to(device).train()
    run = Run(model, *make_optimizers(model, cfg), np.random.default_rng(cfg.seed))
    if resume:
        saved = restore_run(run, out)
        schedule = {"steps": cfg.steps, "epochs": cfg.epochs, "sample_every": cfg.sample_every}
        data_dir = cfg.data_dir or saved.data_dir
        cfg = TrainConfig(**{**saved.__dict__, **schedule, "data_dir": data_dir})
        if main:
            checkpoint.discard_after(out, run.step)
    extra = None
    if replicas is not None:  # swaps layers in place: the optimizers keep the same parameters
        local_batch = replicas.local_batch(cfg.batch_size)
        replicas.prepare(model, local_batch=local_batch, sync_bn=sync_bn)
        extra = {"distributed": {"world_size": replicas.world_size, "sync_bn": sync_bn}}
    return run, cfg, extra


def _training_images(
    cfg: TrainConfig, model_cfg: ModelConfig, device: str | torch.device
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The training split on `device`, and the number of whole batches in one epoch."""
    images, labels = load_dataset(cfg.dataset, "train", cfg.data_dir)
    if images.shape[1] != model_cfg.channels:
        raise BigBiGANError(
            f"--dataset {cfg.dataset}: {images.shape[1]} channels, model has {model_cfg.channels}"
        )
    per_epoch = images.shape[0] // cfg.batch_size
    if per_epoch == 0:
        raise BigBiGANError(
            f"--batch-size {cfg.batch_size}: larger than the dataset ({images.shape[0]} images)"
        )
    return images.to(device), labels.to(device), per_epoch


def _batches(
    run: Run,
    cfg: TrainConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    total: int,
    replicas: Replicas | None,
) -> Iterator[tuple[int, bool, torch.Tensor, torch.Tensor]]:
    """(epoch, last batch of the epoch, x, y) for each step from `run.step` to `total`, this
    rank's rows under torchrun. An epoch's shuffle depends only on (seed, epoch), so a resumed
    run skips to the very batch it stopped before. The caller advances `run.step`."""
    per_epoch = images.shape[0] // cfg.batch_size
    while run.step < total:
        epoch, skip = divmod(run.step, per_epoch)
        batches = iterate_minibatches(
            images, labels, cfg.batch_size, epoch_generator(cfg.seed, epoch)
        )
        for index, (x, y) in enumerate(batches):
            if index < skip:
                continue
            if replicas is not None:
                x, y = replicas.shard(x), replicas.shard(y)
            yield epoch, index == per_epoch - 1, x, y
