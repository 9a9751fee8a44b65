"""Uploaded images: checked for size and type before anything decodes them, then turned into
the encoder's input (NHWC float32 in [0, 1] at the model's resolution).

The checks come first and read only the file's size and header: a 2 MB file is refused
without being read, a file that is not one of the accepted formats without being decoded,
and an image whose header claims more than MAX_PIXELS pixels (a decompression bomb) before
its pixels are expanded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bigbigan.errors import BigBiGANError

MAX_UPLOAD_BYTES = 1 << 20  # 1 MiB: a 32×32 model needs far less; a photo still fits
MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")


class UploadError(BigBiGANError):
    """An upload refused before it reached a model; the page shows the message as it is."""


def _megabytes(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"


def check_upload(path: Path, name: str | None = None, max_bytes: int = MAX_UPLOAD_BYTES) -> str:
    """Refuse an oversized, unreadable or non-image file with one line; return its format."""
    name = name or path.name
    accepted = ", ".join(FORMATS)
    size = path.stat().st_size
    if size > max_bytes:
        raise UploadError(
            f"upload refused: {name} is {_megabytes(size)}, the limit is {_megabytes(max_bytes)}"
        )
    try:
        with Image.open(path) as picture:
            fmt, (width, height) = picture.format, picture.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise UploadError(f"upload refused: {name} is not an image ({accepted} expected)") from err
    if fmt not in FORMATS:
        raise UploadError(f"upload refused: {name} is a {fmt} image, expected {accepted}")
    if width * height > MAX_PIXELS:
        raise UploadError(
            f"upload refused: {name} is {width}×{height} pixels, the limit is {MAX_PIXELS:,}"
        )
    return fmt


def load_upload(
    path: Path,
    *,
    resolution: int,
    channels: int,
    invert: bool = False,
    name: str | None = None,
) -> np.ndarray:
    """The checked image as the encoder's input: (1, R, R, C) float32 in [0, 1], resized
    bilinearly; `invert` turns a dark object on a light background into the training data's
    light-on-dark."""
    check_upload(path, name)
    try:
        with Image.open(path) as picture:
            picture = picture.convert("L" if channels == 1 else "RGB")
            picture = picture.resize((resolution, resolution), Image.BILINEAR)
    except (OSError, ValueError) as e:
        raise UploadError(f"upload refused: {name or path.name} cannot be decoded ({e})") from e
    pixels = np.asarray(picture, dtype=np.float32) / 255.0
    if invert:
        pixels = 1.0 - pixels
    return pixels.reshape(1, resolution, resolution, channels)
