"""The reference training recipe, resumable to the bit.

Per generator/encoder step: `d_steps` discriminator steps on the same real batch with fresh
noise; the last of them also yields the scores that update G and E (as one gradient tape would).
Every epoch (and on Ctrl-C) the run directory gets an atomic checkpoint, a sample grid from fixed
noise and the loss log; a resumed run replays the same batches and noise as an unbroken one.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bigbigan import fsutil, limits
from bigbigan.config import ModelConfig, TrainConfig
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import atomic_path, ensure_dir, write_text
from bigbigan.images import save_grid
from bigbigan.model.networks import BigBiGAN
from bigbigan.training import checkpoint
from bigbigan.training.data import dataset_info, iterate_minibatches, load_dataset
from bigbigan.training.distributed import Replicas, deferred_interrupts
from bigbigan.training.losses import discriminator_loss, generator_encoder_loss
from bigbigan.training.sampling import class_labels, truncated_normal

LOG_FILE = "log.jsonl"
SAMPLES_FILE = "samples.png"
LOSSES_FILE = "losses.png"
SAMPLE_SEED = 1234  # fixed noise for the sample grids, independent of the training seed


@dataclass
class Run:
    """Everything that changes while training; saved whole in each checkpoint."""

    model: BigBiGAN
    opt_d: torch.optim.Optimizer
    opt_ge: torch.optim.Optimizer
    noise_rng: np.random.Generator
    step: int = 0


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

    G and E share one parameter group unless E's lr differs, so that the optimizer state of runs
    made before the multiplier existed still loads.
    """
    lr_d = cfg.lr if cfg.lr_d is None else cfg.lr_d
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=lr_d, betas=cfg.betas)
    groups: list[dict[str, Any]] = [{"params": model.generator_parameters()}]
    if cfg.encoder_lr_mult != 1.0:
        groups = [
            {"params": list(model.G.parameters())},
            {"params": list(model.E.parameters()), "lr": cfg.lr * cfg.encoder_lr_mult},
        ]
    return opt_d, torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)


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
        grads_d = torch.autograd.grad(loss_d, d_params, retain_graph=True)
        grads_ge = torch.autograd.grad(loss_ge, ge_params, allow_unused=True)
        run.opt_ge.zero_grad(set_to_none=True)
        for p, g in zip([*d_params, *ge_params], [*grads_d, *grads_ge], strict=True):
            p.grad = g
        if replicas is not None:
            replicas.average_gradients([*d_params, *ge_params])
        run.opt_d.step()
        run.opt_ge.step()
    if replicas is not None:
        replicas.sync_buffers(model)
    update_ema(model, run.step, cfg.ema_decay)
    losses = {"loss_d": loss_d.item(), "loss_ge": loss_ge.item()}
    for name, r, f in zip(("x", "z", "xz"), real, fake_scores, strict=True):
        losses[f"s_{name}_real"], losses[f"s_{name}_fake"] = r.mean().item(), f.mean().item()
    return losses


def _train_state(run: Run) -> tuple[dict[str, torch.Tensor], dict]:
    tensors_d, groups_d = checkpoint.flatten_optimizer("opt_d", run.opt_d)
    tensors_ge, groups_ge = checkpoint.flatten_optimizer("opt_ge", run.opt_ge)
    tensors = {**tensors_d, **tensors_ge, "torch_rng": torch.get_rng_state()}
    extra = {
        "opt_d_groups": groups_d,
        "opt_ge_groups": groups_ge,
        "noise_rng": run.noise_rng.bit_generator.state,
    }
    return tensors, extra


def save_run(
    run: Run,
    cfg: TrainConfig,
    out: Path,
    extra: dict[str, Any] | None = None,
    keep: int = checkpoint.KEEP,
) -> None:
    """Checkpoint (the last `keep` are kept) and sample grid; `extra` adds keys to
    checkpoint.json's "extra"."""
    tensors, state_extra = _train_state(run)
    extra = {**state_extra, **(extra or {})}
    checkpoint.save(
        out, run.model, train=cfg, step=run.step, train_state=tensors, extra=extra, keep=keep
    )
    fsutil.keep(out)  # a failure from here on must not remove a run that can be resumed
    save_samples(run.model, out / SAMPLES_FILE)


def restore_run(run: Run, out: Path) -> TrainConfig:
    ckpt = resumable(out)
    if ckpt.model != run.model.cfg:
        raise BigBiGANError(
            f"--resume {out}: the checkpoint's architecture differs from the requested one "
            f"({differences(ckpt.model, run.model.cfg)})"
        )
    device = next(run.model.parameters()).device
    checkpoint.load_state(
        run.model,
        checkpoint.load_tensors(ckpt, checkpoint.MODEL_FILE),
        ckpt.directory / checkpoint.MODEL_FILE,
    )
    state = checkpoint.load_tensors(ckpt, checkpoint.STATE_FILE)
    checkpoint.restore_optimizer("opt_d", run.opt_d, state, ckpt.extra["opt_d_groups"])
    checkpoint.restore_optimizer("opt_ge", run.opt_ge, state, ckpt.extra["opt_ge_groups"])
    run.model.to(device)
    torch.set_rng_state(state["torch_rng"])
    run.noise_rng.bit_generator.state = ckpt.extra["noise_rng"]
    run.step = ckpt.step
    assert ckpt.train is not None
    return ckpt.train


def resumable(out: Path) -> checkpoint.Checkpoint:
    """The checkpoint `--resume --out RUN` continues from: one with a training state."""
    if not (Path(out) / checkpoint.CONFIG_FILE).exists() and not checkpoint.step_folders(out):
        raise BigBiGANError(f"--resume {out}: no checkpoint to resume from")
    ckpt = checkpoint.read(out)
    if ckpt.train is None or checkpoint.STATE_FILE not in ckpt.files:
        raise BigBiGANError(f"--resume {out}: its checkpoint holds no training state to resume")
    return ckpt


def differences(saved: Any, requested: Any) -> str:
    """`ch: checkpoint 8, requested 16; ...` for two configs of one dataclass."""
    return "; ".join(
        f"{key}: checkpoint {value!r}, requested {getattr(requested, key)!r}"
        for key, value in saved.__dict__.items()
        if getattr(requested, key) != value
    )


@torch.no_grad()
def save_samples(model: BigBiGAN, path: Path, n: int = 100) -> None:
    """A grid from fixed noise; each column one class when conditional."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    z = torch.from_numpy(truncated_normal(np.random.default_rng(SAMPLE_SEED), (n, model.cfg.z_dim)))
    y = torch.from_numpy(class_labels(n, model.cfg.num_classes)).long()
    images = model.generator(z.to(device), y.to(device) if model.cfg.conditional else None)
    save_grid(images.float().cpu().numpy(), path, ncol=model.cfg.num_classes)
    model.train(was_training)


def _log_rows(path: Path) -> list[dict[str, Any]]:
    """The log's rows; a line a kill cut short (not JSON, or no step) is skipped."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from (and cut lines)."""
    if path.is_file():
        rows = [row for row in _log_rows(path) if row["step"] <= step]
        write_text(path, "".join(json.dumps(row) + "\n" for row in rows), replaces_input=True)


def plot_losses(log_path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = _log_rows(log_path)
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    steps = [r["step"] for r in rows]
    for key in ("loss_d", "loss_ge"):
        ax.plot(steps, [r[key] for r in rows], label=key, linewidth=0.8)
    ax.set_xlabel("generator/encoder step")
    ax.set_ylabel("hinge loss")
    ax.legend()
    ax.grid(alpha=0.3)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


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
    keep: int = checkpoint.KEEP,
) -> Path:
    """Train (or resume) a run in directory `out`; return the directory.

    `replicas` (from `distributed.process_group`) makes this one rank of a data-parallel run:
    `cfg.batch_size` is the global batch, `device` this rank's; only rank 0 writes to `out`,
    which every rank must be able to read to `resume`. `sync_bn` computes batch-norm statistics
    over the global batch instead of each rank's share (no effect in one process). The run
    keeps its last `keep` checkpoints. The writing process holds a lock on `out`: a second
    `train` into it is refused.
    """
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
    keep: int,
) -> Path:
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
    images, labels = load_dataset(cfg.dataset, "train", cfg.data_dir)
    if images.shape[1] != model_cfg.channels:
        raise BigBiGANError(
            f"--dataset {cfg.dataset}: {images.shape[1]} channels, model has {model_cfg.channels}"
        )
    images, labels = images.to(device), labels.to(device)
    per_epoch = images.shape[0] // cfg.batch_size
    if per_epoch == 0:
        raise BigBiGANError(
            f"--batch-size {cfg.batch_size}: larger than the dataset ({images.shape[0]} images)"
        )
    total = cfg.steps if cfg.steps is not None else cfg.epochs * per_epoch
    log_path = out / LOG_FILE
    if main:
        _trim_log(log_path, run.step)
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
                    end_of_epoch = index == per_epoch - 1
                    periodic = cfg.sample_every and run.step % cfg.sample_every == 0
                    if end_of_epoch or periodic or run.step == total or stop:
                        if main:
                            log.flush()
                        save()
                    if stop or run.step == total:
                        break
                if stop:
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
