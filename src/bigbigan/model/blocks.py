"""Building blocks of BigBiGAN: spectral norm, conditional batch norm, attention, residual blocks.

Every module takes NCHW tensors. Spectral norm is PyTorch's parametrization: one power
iteration per forward in training mode, none in eval mode, so inference never changes a buffer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations


def sn(module: nn.Module, dim: int = 0) -> nn.Module:
    """Spectral-normalise `module.weight` with one power iteration per training forward.

    The weight is seen as a matrix with `dim` as its rows: 0 for an ordinary layer (C_out,
    C_in*k*k); 1 for a convolution the reference writes as a stride-1 transposed convolution,
    whose kernel TensorFlow reshapes to (k*k*C_out, C_in) — the same singular values as
    (C_in, C_out*k*k), so power iteration over dim 1 follows the reference's dynamics.
    """
    return parametrizations.spectral_norm(module, n_power_iterations=1, dim=dim)


def conv3x3(cin: int, cout: int, spectral: bool = True) -> nn.Module:
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    return sn(conv) if spectral else conv


def conv1x1(cin: int, cout: int, bias: bool = False) -> nn.Module:
    return sn(nn.Conv2d(cin, cout, 1, bias=bias))


class ConditionalBatchNorm(nn.Module):
    """Batch norm without its own affine; gain and shift are dense maps of the condition.

    As in the reference the gain is `gamma(c)` itself, not `1 + gamma(c)`; `one_plus_gain`
    gives BigGAN's `1 + gamma(c)`, which starts near the identity instead of at random gains of
    either sign (docs/quality.md, "Ablations").
    """

    def __init__(self, num_features: int, cond_dim: int, one_plus_gain: bool = False) -> None:
        super().__init__()
        self.one_plus_gain = one_plus_gain
        self.bn = nn.BatchNorm2d(num_features, affine=False, eps=1e-5, momentum=0.1)
        self.gamma = nn.Linear(cond_dim, num_features)
        self.beta = nn.Linear(cond_dim, num_features)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma(c)[:, :, None, None]
        if self.one_plus_gain:  # a branch, not `+ 0.0`: the reference's graph stays as it was
            gamma = gamma + 1
        beta = self.beta(c)[:, :, None, None]
        return self.bn(x) * gamma + beta


class SelfAttention(nn.Module):
    """SAGAN self-attention over the H*W positions; starts as the identity (gamma = 0)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(channels // 8, 1)
        self.f = conv1x1(channels, inner, bias=True)
        self.g = conv1x1(channels, inner, bias=True)
        self.h = conv1x1(channels, inner, bias=True)
        self.o = conv1x1(inner, channels, bias=True)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, height, width = x.shape
        f = self.f(x).flatten(2)  # (B, K, HW)
        g = self.g(x).flatten(2)  # (B, K, HW)
        h = self.h(x).flatten(2)  # (B, K, HW)
        attention = torch.softmax(g.transpose(1, 2) @ f, dim=-1)  # (B, HW, HW)
        o = (h @ attention.transpose(1, 2)).view(b, -1, height, width)  # (B, K, H, W)
        return self.gamma * self.o(o) + x


class UpBlock(nn.Module):
    """Generator residual block: CBN-ReLU-up-conv-CBN-ReLU-conv, skip: up-conv1x1."""

    def __init__(self, cin: int, cout: int, cond_dim: int, one_plus_gain: bool = False) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm(cin, cond_dim, one_plus_gain)
        self.conv1 = conv3x3(cin, cout)
        self.bn2 = ConditionalBatchNorm(cout, cond_dim, one_plus_gain)
        self.conv2 = conv3x3(cout, cout)
        self.skip = conv1x1(cin, cout)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), c)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class DownBlock(nn.Module):
    """Discriminator residual block: ReLU-conv-ReLU-conv-pool, skip: conv1x1-pool."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout)
        self.conv2 = conv3x3(cout, cout)
        self.skip = conv1x1(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


class ResBlock(nn.Module):
    """Same-resolution residual block: conv-ReLU-conv plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x))) + x


class DenseResBlock(nn.Module):
    """Dense residual block of H, J (spectral-normed) and the encoder's head (plain)."""

    def __init__(self, cin: int, units: int, spectral: bool = True, dropout: float = 0.2) -> None:
        super().__init__()

        def dense(i: int, o: int) -> nn.Module:
            layer = nn.Linear(i, o)
            return sn(layer) if spectral else layer

        self.fc1 = dense(cin, units)
        self.fc2 = dense(units, units)
        self.skip = dense(cin, units)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.dropout(self.fc1(x)), 0.2)
        h = F.leaky_relu(self.dropout(self.fc2(h)), 0.2)
        return h + F.leaky_relu(self.skip(x), 0.2)


class ReversibleBlock(nn.Module):
    """RevNet block: y1 = x1 + unit(x2), output [x2, y1]; unit is a residual conv-BN-ReLU pair."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.unit = nn.Sequential(
            nn.Conv2d(half, half, 3, padding=1, bias=False),
            nn.BatchNorm2d(half, eps=1e-3, momentum=0.01),
            nn.ReLU(),
            nn.Conv2d(half, half, 3, padding=1, bias=False),
            nn.BatchNorm2d(half, eps=1e-3, momentum=0.01),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        y1 = x1 + x2 + self.unit(x2)
        return torch.cat([x2, y1], dim=1)


class LabelHead(nn.Linear):
    """A linear classifier that starts at zero (uniform logits) and so draws nothing from the
    RNG: a model with one initialises every other layer exactly as a model without it."""

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)
