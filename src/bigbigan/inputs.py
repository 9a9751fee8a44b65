"""`bigbigan make-inputs`: the binary input files of an offline run (the original's pic2bin).

Noise comes from the training distribution (truncated normal, |z| <= 2) through NumPy's PCG64, so
the same seed writes the same bytes on any machine; that is the default because it is what the
generator saw in training. `--noise uniform` draws uniform [0, 1) noise instead, as the original
pic2bin does, to reproduce its files' distribution. `--dataset` writes real images for the encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigbigan import limits
from bigbigan.binio import save_bin
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import ensure_dir
from bigbigan.training.sampling import truncated_normal

NOISE_FILE = "fake_image.bin"  # the original system's names
LABEL_FILE = "label.bin"
IMAGE_FILE = "image.bin"
NOISES = ("truncated-normal", "uniform")  # the training distribution; pic2bin's


def make_inputs(
    out: str | Path,
    *,
    batch: int = 256,
    seed: int = 0,
    num_classes: int = 10,
    z_dim: int = 100,
    dataset: str | None = None,
    data_dir: str | None = None,
    noise: str = "truncated-normal",
) -> list[Path]:
    """Write generator inputs (noise, labels) or, with `dataset`, encoder inputs (images, and
    their labels beside them) into `out`; return the paths in the model's input order.
    `noise`: "truncated-normal" (training's) or "uniform" ([0, 1), the original pic2bin's)."""
    if batch < 1:
        raise BigBiGANError(f"--batch {batch}: expected a positive batch size")
    if num_classes < 1:
        raise BigBiGANError(f"--num-classes {num_classes}: expected at least 1")
    if noise not in NOISES:
        raise BigBiGANError(f"--noise {noise}: expected one of {', '.join(NOISES)}")
    # float64 draws, float32 noise, int32 labels
    limits.check_memory(batch * (12 * z_dim + 8), f"--batch {batch} x --z-dim {z_dim}")
    out = ensure_dir(out)
    rng = np.random.default_rng(seed)
    if dataset is not None:
        return _real_images(out, rng, batch, dataset, data_dir)
    if noise == "uniform":
        z = rng.random((batch, z_dim), dtype=np.float32)
    else:
        z = truncated_normal(rng, (batch, z_dim))
    labels = rng.integers(0, num_classes, batch).astype(np.int32)
    save_bin(out / NOISE_FILE, z)
    save_bin(out / LABEL_FILE, labels)
    return [out / NOISE_FILE, out / LABEL_FILE]


def _real_images(
    out: Path, rng: np.random.Generator, batch: int, dataset: str, data_dir: str | None
) -> list[Path]:
    """A seeded sample of the test split, NHWC float32 in [0, 1], with its true labels."""
    from bigbigan.training.data import load_dataset

    images, labels = load_dataset(dataset, "test", data_dir)
    if batch > len(images):
        raise BigBiGANError(f"--batch {batch}: the {dataset} test split has {len(images)} images")
    index = np.sort(rng.choice(len(images), batch, replace=False))
    save_bin(out / IMAGE_FILE, images[index].permute(0, 2, 3, 1).numpy())
    save_bin(out / LABEL_FILE, labels[index].numpy().astype(np.int32))
    return [out / IMAGE_FILE]  # the labels are for evaluation, not an encoder input


def input_files(spec: str | Path) -> list[Path]:
    """`--input`: a directory written by make-inputs (generator or encoder inputs), or a
    comma-separated list of files."""
    path = Path(spec)
    if path.is_dir():
        if (path / IMAGE_FILE).exists() and not (path / NOISE_FILE).exists():
            return [path / IMAGE_FILE]
        files = [path / NOISE_FILE, path / LABEL_FILE]
        present = [f for f in files if f.exists()]
        if not present:
            raise BigBiGANError(f"--input {path}: holds neither {NOISE_FILE} nor {LABEL_FILE}")
        return present
    return [Path(p) for p in str(spec).split(",") if p]
