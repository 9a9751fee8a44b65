"""Image grids as PNG: training samples, reconstructions, side-by-side comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bigbigan.fsutil import atomic_path


def to_nhwc(images: np.ndarray) -> np.ndarray:
    """Accept (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3}; return NHWC."""
    images = np.asarray(images)
    if images.ndim == 3:
        return images[..., None]
    if images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        return images.transpose(0, 2, 3, 1)
    return images


def tile(images: np.ndarray, ncol: int, pad: int = 2) -> np.ndarray:
    """Tile NHWC images in [0, 1] into one uint8 RGB array with `ncol` columns."""
    images = to_nhwc(images)
    n, h, w, c = images.shape
    nrow = -(-n // ncol)
    canvas = np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), np.uint8) * 255
    pixels = (np.clip(np.nan_to_num(images), 0, 1) * 255 + 0.5).astype(np.uint8)
    if c == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top : top + h, left : left + w] = pixels[i]
    return canvas


def save_grid(images: np.ndarray, path: str | Path, ncol: int = 10, scale: int = 2) -> None:
    """Write a grid of images to PNG, each pixel drawn `scale` times wider for legibility."""
    picture = Image.fromarray(tile(images, ncol))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    _save(picture, path)


def save_labelled_rows(
    rows: Sequence[np.ndarray], labels: Sequence[str], path: str | Path, scale: int = 2
) -> None:
    """One row of images per entry with its label on the left: files side by side."""
    strips = [Image.fromarray(tile(r, len(to_nhwc(r)))) for r in rows]
    strips = [s.resize((s.width * scale, s.height * scale), Image.NEAREST) for s in strips]
    margin = 8 + 7 * max(len(label) for label in labels)
    width = margin + max(s.width for s in strips)
    picture = Image.new("RGB", (width, sum(s.height for s in strips)), "white")
    draw = ImageDraw.Draw(picture)
    top = 0
    for strip, label in zip(strips, labels, strict=True):
        picture.paste(strip, (margin, top))
        draw.text((4, top + strip.height // 2 - 6), label, fill="black")
        top += strip.height
    _save(picture, path)


def save_heatmap(values: np.ndarray, path: str | Path, scale: int = 8) -> None:
    """A (H, W) non-negative map as a colour PNG, scaled to its own maximum."""
    from matplotlib import colormaps

    peak = float(values.max()) or 1.0
    rgb = (colormaps["inferno"](values / peak)[..., :3] * 255).astype(np.uint8)
    picture = Image.fromarray(rgb)
    _save(picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST), path)


def _save(picture: Image.Image, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
