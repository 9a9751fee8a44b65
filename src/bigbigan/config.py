"""Typed configuration that round-trips through JSON: a checkpoint's JSON rebuilds the nets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from bigbigan.errors import BigBiGANError

T = TypeVar("T")

INITS = ("normal", "orthogonal")


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

    def __post_init__(self) -> None:
        if self.z_dim % 4:
            raise BigBiGANError(f"--z-dim must be a multiple of 4, found {self.z_dim}")
        if self.ch < 8 or self.ch % 8:
            raise BigBiGANError(f"--ch must be a positive multiple of 8, found {self.ch}")
        if self.channels not in (1, 3):
            raise BigBiGANError(f"channels must be 1 or 3, found {self.channels}")
        if self.init not in INITS:
            raise BigBiGANError(f"--init must be one of {INITS}, found {self.init!r}")


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


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build a config dataclass from JSON data, rejecting unknown keys with a clear error."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BigBiGANError(f"{source}: unknown {cls.__name__} keys {unknown}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as e:
        raise BigBiGANError(f"{source}: bad {cls.__name__}: {e}") from None


def dumps(config: Any) -> str:
    return json.dumps(to_dict(config), indent=2, sort_keys=True)
