"""A training run's state and its checkpoint: what is saved so that a resumed run replays the
unbroken one bit for bit (weights, both optimizers, the torch and NumPy generators, the step).

The layout (checkpoint.json's "extra" keys, the tensor names in the state file) is the one every
existing run directory holds; changing it would make those runs unresumable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bigbigan import fsutil
from bigbigan.config import TrainConfig
from bigbigan.errors import BigBiGANError
from bigbigan.model.networks import BigBiGAN
from bigbigan.training import checkpoint
from bigbigan.training.outputs import SAMPLES_FILE, save_samples


@dataclass
class Run:
    """Everything that changes while training; saved whole in each checkpoint."""

    model: BigBiGAN
    opt_d: torch.optim.Optimizer
    opt_ge: torch.optim.Optimizer
    noise_rng: np.random.Generator
    step: int = 0


def _train_state(run: Run) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimizers' tensors and the torch generator's state, and what goes in "extra"."""
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
    keep: checkpoint.Retention = checkpoint.DEFAULT_RETENTION,
) -> None:
    """Checkpoint (`keep` says which older ones stay) and sample grid; `extra` adds keys to
    checkpoint.json's "extra"."""
    tensors, state_extra = _train_state(run)
    extra = {**state_extra, **(extra or {})}
    if keep.every:  # read back by a resume that is not told again (resume.recorded_keep_every)
        extra["keep_every"] = keep.every
    checkpoint.save(
        out, run.model, train=cfg, step=run.step, train_state=tensors, extra=extra, keep=keep
    )
    fsutil.keep(out)  # a failure from here on must not remove a run that can be resumed
    save_samples(run.model, out / SAMPLES_FILE)


def restore_run(run: Run, out: Path) -> TrainConfig:
    """Load the newest checkpoint in `out` into `run`; return the training config it was saved
    with. The architecture must be the one `run` was built with."""
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
