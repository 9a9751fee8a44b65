"""The trained models shipped in the repository's `models/` folder, found without a download."""

from __future__ import annotations

from pathlib import Path

from bigbigan.errors import BigBiGANError

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"  # the repository's models/ folder
GAN = "bigbigan_fashion_mnist"  # the shipped BigBiGAN checkpoint (see models/README.md)


def shipped_checkpoint() -> Path:
    """The shipped BigBiGAN checkpoint, or a clear error where this install has none."""
    path = MODELS_DIR / GAN
    if not (path / "checkpoint.json").is_file():
        raise BigBiGANError(
            f"--checkpoint not given and the shipped model {path} is missing "
            "(install from a clone of the repository, or pass --checkpoint)"
        )
    return path
