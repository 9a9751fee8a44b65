"""Hinge losses of BigBiGAN, summed over the three scores s_x, s_z and s_xz."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def discriminator_loss(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum over scores of mean(relu(1 - s_real)) + mean(relu(1 + s_fake))."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True))


def generator_encoder_loss(
    real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]
) -> torch.Tensor:
    """sum over scores of mean(s_real) - mean(s_fake): G and E pull the two sides together."""
    return sum(r.mean() - f.mean() for r, f in zip(real, fake, strict=True))
