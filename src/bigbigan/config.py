"""Typed configuration that round-trips through JSON: a checkpoint's JSON rebuilds the nets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from bigbigan.errors import BigBiGANError

T = TypeVar("T")

INITS = ("normal", "orthogonal")
OUTPUT_SN_LAYOUTS = ("transposed", "conv")
CBN_GAINS = ("gamma", "one_plus_gamma")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the five networks; the defaults are the reference's (docs/architecture.md,
    "The model")."""

    channels: int = 1  # image channels C: 1 (MNIST family), 3 (CIFAR-10)
    ch: int = 64  # base width; G runs 4ch -> 4ch -> 2ch -> ch, F the reverse
    z_dim: int = 100  # noise size, split into 4 equal chunks
    num_classes: int = 10
    conditional: bool = True
    embed_dim: int = 32  # generator's class embedding
    init: str = "normal"  # "normal": truncated normal std 0.02 (MNIST); "orthogonal" otherwise
    resolution: int = 32
    # The matrix G's output layer's spectral norm sees: "transposed" is the reference's stride-1
    # transposed convolution, (3*3*C, ch); "conv" the (C, ch*3*3) of checkpoints made before
    # this field existed (a checkpoint.json without it means "conv", see LEGACY_DEFAULTS).
    output_sn: str = "transposed"
    # Recipe options (docs/quality.md); the defaults are the reference's.
    stochastic_encoder: bool = False  # E outputs mu and sigma = softplus(.); z = mu + sigma*eps
    cbn_gain: str = "gamma"  # "one_plus_gamma": CBN scales by 1 + gamma(c), as BigGAN does
    # Fraction of each batch (real and fake alike) whose label is replaced by a "no label" class,
    # so that z, not y, must carry the class there; > 0 adds that class's embedding rows.
    label_dropout: float = 0.0
    ema: bool = False  # keep exponential moving averages of G and E for evaluation and export
    # E's base width (None: `ch`), its layers scaled from it as from `ch`: BigBiGAN's encoders
    # are wider than the reference's, whose pooled features are only 2 * ch wide.
    encoder_ch: int | None = None
    # E also predicts y: the weight of a cross-entropy loss, against the real image's label, of a
    # linear classifier on E's z, added to G and E's loss. The conditional set-up lets z carry no
    # class (G is told y); this asks z to carry it. > 0 adds the classifier, used only in training.
    encoder_label_loss: float = 0.0

    # Values a checkpoint.json written before a field existed stands for (not the defaults).
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"output_sn": "conv"}

    def __post_init__(self) -> None:
        if self.z_dim % 4:
            raise BigBiGANError(f"--z-dim must be a multiple of 4, found {self.z_dim}")
        for flag, width in (("--ch", self.ch), ("--encoder-ch", self.encoder_ch)):
            if width is not None and (width < 8 or width % 8):
                raise BigBiGANError(f"{flag} must be a positive multiple of 8, found {width}")
        if self.channels not in (1, 3):
            raise BigBiGANError(f"channels must be 1 or 3, found {self.channels}")
        if self.init not in INITS:
            raise BigBiGANError(f"--init must be one of {INITS}, found {self.init!r}")
        if self.cbn_gain not in CBN_GAINS:
            raise BigBiGANError(f"--cbn-gain must be one of {CBN_GAINS}, found {self.cbn_gain!r}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise BigBiGANError(f"--label-dropout must be in [0, 1), found {self.label_dropout}")
        if self.label_dropout and not self.conditional:
            raise BigBiGANError("--label-dropout needs a conditional model (drop --unconditional)")
        if not self.encoder_label_loss >= 0.0:
            raise BigBiGANError(
                f"--encoder-label-loss must be >= 0, found {self.encoder_label_loss}"
            )
        if self.encoder_label_loss and not self.conditional:
            raise BigBiGANError("--encoder-label-loss needs a conditional model's labels")
        if self.output_sn not in OUTPUT_SN_LAYOUTS:
            raise BigBiGANError(
                f"--output-sn must be one of {OUTPUT_SN_LAYOUTS}, found {self.output_sn!r}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """The reference's training recipe; `steps` (if set) overrides `epochs`."""

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    batch_size: int = 256
    epochs: int = 50
    steps: int | None = None  # total generator/encoder steps; None: epochs x batches per epoch
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    d_steps: int = 2  # discriminator steps per generator/encoder step
    seed: int = 0
    amp: bool = False  # bf16/fp16 autocast on CUDA
    sample_every: int = 0  # extra checkpoint + sample grid every N steps (0: once per epoch)
    lr_d: float | None = None  # discriminators' Adam lr (None: `lr`, which G and E use)
    encoder_lr_mult: float = 1.0  # E's lr is lr * this (the paper found a higher one better)
    encoder_warmup: int = 0  # E's lr ramps linearly to full over this many G/E steps (0: none)
    ema_decay: float = 0.999  # EMA of G and E (models built with `ema`), warmed up from 0

    def __post_init__(self) -> None:
        for name in ("lr", "lr_d", "encoder_lr_mult"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                flag = name.replace("_", "-")
                raise BigBiGANError(f"--{flag} must be positive, found {value}")
        if not self.encoder_warmup >= 0:
            raise BigBiGANError(f"--encoder-warmup must be >= 0, found {self.encoder_warmup}")
        if not 0.0 < self.ema_decay < 1.0:
            raise BigBiGANError(f"--ema-decay must be in (0, 1), found {self.ema_decay}")

    @property
    def encoder_lr(self) -> float:
        """E's full learning rate (after any warm-up)."""
        return self.lr * self.encoder_lr_mult


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build a config dataclass from JSON data, rejecting unknown keys with a clear error.

    A key the data lacks takes the class's `LEGACY_DEFAULTS` value if it has one (what files
    written before the field existed meant), else the field's default.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BigBiGANError(f"{source}: unknown {cls.__name__} keys {unknown}")
    data = {**getattr(cls, "LEGACY_DEFAULTS", {}), **data}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as e:
        raise BigBiGANError(f"{source}: bad {cls.__name__}: {e}") from e


def dumps(config: Any) -> str:
    return json.dumps(to_dict(config), indent=2, sort_keys=True)
