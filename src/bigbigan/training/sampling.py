"""The noise distribution shared by training, `make-inputs` and evaluation.

NumPy's PCG64 gives the same bytes for the same seed on every machine, which is what makes
input files and resumed training reproducible.
"""

from __future__ import annotations

import math

import numpy as np

from bigbigan.errors import BigBiGANError

TRUNCATION = 2.0  # training's noise: |z| <= 2
MIN_TRUNCATION = 0.1  # below it a class's images are all nearly one image


def truncated_normal(
    rng: np.random.Generator, shape: tuple[int, ...], threshold: float = TRUNCATION
) -> np.ndarray:
    """Standard normal float32 samples with |z| <= threshold (2: training's), by redrawing the
    ones outside; a lower threshold trades variety for typical samples (the truncation trick)."""
    z = rng.standard_normal(shape, dtype=np.float32)
    outside = np.abs(z) > threshold
    while outside.any():
        z[outside] = rng.standard_normal(int(outside.sum()), dtype=np.float32)
        outside = np.abs(z) > threshold
    return z


def check_truncation(threshold: float, flag: str = "truncation") -> float:
    """`threshold` if it lies in [MIN_TRUNCATION, TRUNCATION]: above training's, G would be fed
    noise it never saw."""
    if not MIN_TRUNCATION <= threshold <= TRUNCATION:
        raise BigBiGANError(
            f"{flag} {threshold:g}: expected {MIN_TRUNCATION:g} to {TRUNCATION:g} "
            "(the training noise's bound)"
        )
    return threshold


def truncated_normal_rms(threshold: float = TRUNCATION) -> float:
    """The root mean square of `truncated_normal`'s samples, in closed form: the scale an
    encoder's z should have to look like G's noise."""
    density = math.exp(-(threshold**2) / 2) / math.sqrt(2 * math.pi)
    return math.sqrt(1 - 2 * threshold * density / math.erf(threshold / math.sqrt(2)))


def class_labels(n: int, num_classes: int) -> np.ndarray:
    """Labels 0, 1, ..., num_classes-1, 0, 1, ... as int32: every class equally often."""
    return (np.arange(n) % num_classes).astype(np.int32)
