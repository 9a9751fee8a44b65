"""`train --resume --out RUN`: the architecture, data and schedule come from the checkpoint.

A flag given on the command line must agree with the checkpoint (otherwise the resumed run
would not be the run that was started: one line shows both sides); `--steps` / `--epochs`
extend the schedule; flags that do not change a single bit of the result (`--data-dir`,
`--sample-every`) may differ.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bigbigan.config import ModelConfig, TrainConfig
from bigbigan.errors import BigBiGANError

# flag dest -> (config, field); `unconditional` is the negation of `conditional`
_MODEL_FLAGS = {"ch": "ch", "init": "init"}
_MODEL_FLAGS |= {  # the recipe options (docs/quality.md)
    name: name
    for name in (
        "output_sn",
        "stochastic_encoder",
        "cbn_gain",
        "label_dropout",
        "ema",
        "encoder_ch",
        "encoder_label_loss",
    )
}
_TRAIN_FLAGS = {
    "dataset": "dataset",
    "batch": "batch_size",
    "lr": "lr",
    "seed": "seed",
    "amp": "amp",
    "lr_d": "lr_d",
    "encoder_lr_mult": "encoder_lr_mult",
    "encoder_warmup": "encoder_warmup",
    "ema_decay": "ema_decay",
}
_FREE_FLAGS = {"data_dir": "data_dir", "sample_every": "sample_every"}


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The dests of the options `argv` sets explicitly (a default is not "given"): `argv` is
    parsed again with every default suppressed."""
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.dest != "help":
                action.default = argparse.SUPPRESS
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
        p._defaults.clear()
    return set(vars(parser.parse_args(argv)))


def resume_configs(
    out: str | Path, args: argparse.Namespace, given: set[str]
) -> tuple[TrainConfig, ModelConfig]:
    """The configs of the run in `out`, with the schedule (and harmless flags) given in `args`;
    a given flag that contradicts the checkpoint is an error naming both values."""
    from bigbigan.training.state import resumable

    ckpt = resumable(Path(out))
    assert ckpt.train is not None
    requested = {
        **{flag: (ckpt.model, name, getattr(args, flag)) for flag, name in _MODEL_FLAGS.items()},
        **{flag: (ckpt.train, name, getattr(args, flag)) for flag, name in _TRAIN_FLAGS.items()},
        "unconditional": (ckpt.model, "conditional", not args.unconditional),
    }
    clashes = [
        f"--{flag.replace('_', '-')} {value if flag != 'unconditional' else ''}".rstrip()
        + f" (checkpoint: {name} {getattr(config, name)!r})"
        for flag, (config, name, value) in requested.items()
        if flag in given and getattr(config, name) != value
    ]
    if clashes:
        raise BigBiGANError(
            f"--resume {out}: the run was started otherwise: {'; '.join(clashes)}; resume "
            "takes these from the checkpoint (drop the flags) or start a new --out"
        )
    changes = {name: getattr(args, flag) for flag, name in _FREE_FLAGS.items() if flag in given}
    if "steps" in given:
        changes["steps"] = args.steps
    elif "epochs" in given:
        changes |= {"epochs": args.epochs, "steps": None}
    return replace(ckpt.train, **changes), ckpt.model


def recorded_keep_every(out: str | Path) -> int:
    """The `--keep-every` the run in `out` was last trained with (0: none), so that a resume not
    told again keeps the milestones instead of pruning them."""
    from bigbigan.training.state import resumable

    ckpt = resumable(Path(out))
    value = ckpt.extra.get("keep_every", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BigBiGANError(
            f"{ckpt.source}: 'keep_every' in 'extra' must be a step count, found {value!r:.60}"
        )
    return value


def as_options(cfg: TrainConfig, model_cfg: ModelConfig) -> dict[str, object]:
    """The `train` options (argparse dests) that rebuild these configs."""
    options = {flag: getattr(model_cfg, name) for flag, name in _MODEL_FLAGS.items()}
    for flag, name in {**_TRAIN_FLAGS, **_FREE_FLAGS}.items():
        options[flag] = getattr(cfg, name)
    options |= {"steps": cfg.steps, "epochs": cfg.epochs}
    return {**options, "unconditional": not model_cfg.conditional}
