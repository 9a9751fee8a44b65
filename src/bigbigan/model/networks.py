"""The five BigBiGAN networks (docs/architecture.md, "The model") and the whole that holds them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bigbigan.config import ModelConfig
from bigbigan.model.blocks import (
    DenseResBlock,
    DownBlock,
    LabelHead,
    ResBlock,
    ReversibleBlock,
    SelfAttention,
    UpBlock,
    sn,
)


def label_rows(cfg: ModelConfig) -> int:
    """Rows of the class embeddings: one more than the classes when labels are dropped in
    training, the last row standing for "no label" (`ModelConfig.label_dropout`)."""
    return cfg.num_classes + (1 if cfg.label_dropout > 0 else 0)


class Generator(nn.Module):
    """G(z, y) -> image in [0, 1], (B, C, 32, 32)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch, self.chunk = cfg.ch, cfg.z_dim // 4
        cond_dim = self.chunk + (cfg.embed_dim if cfg.conditional else 0)
        self.embed = nn.Embedding(label_rows(cfg), cfg.embed_dim) if cfg.conditional else None
        self.dense = sn(nn.Linear(self.chunk, 4 * 4 * 4 * ch))
        one_plus = cfg.cbn_gain == "one_plus_gamma"
        self.block1 = UpBlock(4 * ch, 4 * ch, cond_dim, one_plus)
        self.block2 = UpBlock(4 * ch, 2 * ch, cond_dim, one_plus)
        self.attention = SelfAttention(2 * ch)
        self.block3 = UpBlock(2 * ch, ch, cond_dim, one_plus)
        self.bn = nn.BatchNorm2d(ch, eps=1e-3, momentum=0.01)
        out_conv = nn.Conv2d(ch, cfg.channels, 3, padding=1, bias=False)
        self.conv_out = sn(out_conv, dim=1 if cfg.output_sn == "transposed" else 0)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z0, *chunks = z.split(self.chunk, dim=1)
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional generator needs labels")
            e = self.embed(y)
            chunks = [torch.cat([c, e], dim=1) for c in chunks]
        x = self.dense(z0).view(z.shape[0], -1, 4, 4)  # (B, 4ch, 4, 4)
        x = self.block1(x, chunks[0])  # (B, 4ch, 8, 8)
        x = self.block2(x, chunks[1])  # (B, 2ch, 16, 16)
        x = self.attention(x)
        x = self.block3(x, chunks[2])  # (B, ch, 32, 32)
        return torch.sigmoid(self.conv_out(F.relu(self.bn(x))))  # (B, C, 32, 32)


class Encoder(nn.Module):
    """E(x) -> z (B, z_dim): a RevNet trunk at doubled resolution, then a dense head.

    A stochastic encoder's head gives mu and sigma = softplus(.) (BigBiGAN's); in training it
    returns z = mu + sigma * eps, in eval mode mu, the representation (and the exported E).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.stochastic = cfg.stochastic_encoder
        w = (cfg.encoder_ch or cfg.ch) // 2  # 32 at the reference width
        self.stem = nn.Conv2d(cfg.channels, w, 7, stride=2)
        self.stage1 = nn.Sequential(ReversibleBlock(w), ReversibleBlock(w))
        self.stage2 = nn.Sequential(ReversibleBlock(2 * w), ReversibleBlock(2 * w))
        self.stage3 = nn.Sequential(ReversibleBlock(4 * w), ReversibleBlock(4 * w))
        self.head = nn.Sequential(
            DenseResBlock(4 * w, 8 * w, spectral=False),
            DenseResBlock(8 * w, 8 * w, spectral=False),
            nn.Linear(8 * w, cfg.z_dim * (2 if self.stochastic else 1)),
        )
        # training only (`encoder_label_loss`): logits of y from z; export and evaluate skip it
        self.classifier = (
            LabelHead(cfg.z_dim, cfg.num_classes) if cfg.encoder_label_loss > 0 else None
        )

    @staticmethod
    def _pool_widen(x: torch.Tensor) -> torch.Tensor:
        """Average-pool 2 ('same' padding) and zero-pad channels to twice, half on each side."""
        x = F.avg_pool2d(x, 2, ceil_mode=True)
        pad = x.shape[1] // 2
        return F.pad(x, (0, 0, 0, 0, pad, pad))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's globally pooled features (B, 4w): what BigBiGAN's probes read."""
        x = F.interpolate(x, scale_factor=2, mode="nearest")  # (B, C, 64, 64)
        x = self.stem(F.pad(x, (2, 3, 2, 3)))  # TF 'same' for 7x7 stride 2: (B, w, 32, 32)
        x = F.max_pool2d(x, 3, stride=2)  # (B, w, 15, 15)
        x = self.stage1(x)
        x = self.stage2(self._pool_widen(x))  # (B, 2w, 8, 8)
        x = self.stage3(self._pool_widen(x))  # (B, 4w, 4, 4)
        return x.mean(dim=(2, 3))  # (B, 4w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent(self.features(x))

    def latent(self, features: torch.Tensor) -> torch.Tensor:
        """z from the pooled trunk features: the head's output, or mu (eval) / a sample."""
        h = self.head(features)  # (B, z_dim) or, stochastic, (B, 2 z_dim)
        if not self.stochastic:
            return h
        mu, sigma = h.chunk(2, dim=1)
        if not self.training:
            return mu
        return mu + F.softplus(sigma) * torch.randn_like(mu)


class DiscriminatorF(nn.Module):
    """F(x, y) -> (features (B, 4ch), score (B,)), with a projection term when conditional."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ch = cfg.ch
        self.block1 = DownBlock(cfg.channels, ch)  # 16x16
        self.attention = SelfAttention(ch)
        self.block2 = DownBlock(ch, 2 * ch)  # 8x8
        self.block3 = DownBlock(2 * ch, 4 * ch)  # 4x4
        self.block4 = ResBlock(4 * ch)
        self.score = sn(nn.Linear(4 * ch, 1))
        self.embed = nn.Embedding(label_rows(cfg), 4 * ch) if cfg.conditional else None

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.attention(self.block1(x))
        h = self.block4(self.block3(self.block2(h)))
        features = F.relu(h).sum(dim=(2, 3))  # (B, 4ch)
        score = self.score(features).squeeze(1)
        if self.embed is not None and y is not None:
            score = score + (self.embed(y) * features).sum(dim=1)
        return features, score


class DiscriminatorH(nn.Module):
    """H(z) -> (features (B, ch), score (B,))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        u = cfg.ch
        self.blocks = nn.Sequential(
            DenseResBlock(cfg.z_dim, u), DenseResBlock(u, u), DenseResBlock(u, u)
        )
        self.score = sn(nn.Linear(u, 1))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.blocks(z)
        return features, self.score(features).squeeze(1)


class DiscriminatorJ(nn.Module):
    """J(F features, H features) -> joint score (B,)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        u = cfg.ch
        self.blocks = nn.Sequential(
            DenseResBlock(4 * cfg.ch + u, u), DenseResBlock(u, u), DenseResBlock(u, u)
        )
        self.score = sn(nn.Linear(u, 1))

    def forward(self, fx: torch.Tensor, hz: torch.Tensor) -> torch.Tensor:
        return self.score(self.blocks(torch.cat([fx, hz], dim=1))).squeeze(1)


class BigBiGAN(nn.Module):
    """Generator, encoder and the three discriminators, named as in the paper."""

    def __init__(self, cfg: ModelConfig, initialize: bool = True) -> None:
        """`initialize=False` skips the reference initialisation (an orthogonal one runs a QR
        per layer) when the weights are about to be loaded anyway."""
        super().__init__()
        self.cfg = cfg
        self.G = Generator(cfg)
        self.E = Encoder(cfg)
        self.F = DiscriminatorF(cfg)
        self.H = DiscriminatorH(cfg)
        self.J = DiscriminatorJ(cfg)
        if initialize:
            init_weights(self, cfg.init)
        # EMA copies of G and E, starting as copies: updated by the training loop, never by an
        # optimizer; built under a forked RNG so every other random draw is as without them.
        self.G_ema: Generator | None = None
        self.E_ema: Encoder | None = None
        if cfg.ema:
            with torch.random.fork_rng(devices=[]):
                self.G_ema = Generator(cfg).requires_grad_(False)
                self.E_ema = Encoder(cfg).requires_grad_(False)
            for average, live in self.ema_pairs():
                average.load_state_dict(live.state_dict())

    @property
    def generator(self) -> Generator:
        """The generator to evaluate and export: the EMA copy when the model keeps one."""
        return self.G_ema if self.G_ema is not None else self.G

    @property
    def encoder(self) -> Encoder:
        """The encoder to evaluate and export: the EMA copy when the model keeps one."""
        return self.E_ema if self.E_ema is not None else self.E

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(average, live) module pairs; empty without `cfg.ema`."""
        if self.G_ema is None or self.E_ema is None:
            return []
        return [(self.G_ema, self.G), (self.E_ema, self.E)]

    def scores(
        self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three discriminator scores (s_x, s_z, s_xz) of image/latent pairs."""
        fx, s_x = self.F(x, y)
        hz, s_z = self.H(z)
        return s_x, s_z, self.J(fx, hz)

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.F.parameters(), *self.H.parameters(), *self.J.parameters()]

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.G.parameters(), *self.E.parameters()]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def generator_flops(cfg: ModelConfig) -> int:
    """Floating-point operations (2 per multiply-add) of one generated image, counted by hooks."""
    from torch.utils.flop_counter import FlopCounterMode

    g = Generator(cfg).eval()
    z = torch.zeros(1, cfg.z_dim)
    y = torch.zeros(1, dtype=torch.long) if cfg.conditional else None
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        g(z, y)
    return counter.get_total_flops()


def _weight_of(module: nn.Module) -> torch.Tensor:
    """The trainable weight, beneath a spectral-norm parametrization if there is one."""
    if hasattr(module, "parametrizations"):
        return module.parametrizations.weight.original
    return module.weight


@torch.no_grad()
def init_weights(model: nn.Module, init: str) -> None:
    """The reference's initialisation: truncated normal (std 0.02) or orthogonal kernels, zero
    biases, except Keras defaults where the reference keeps them (embeddings uniform +-0.05,
    attention 1x1 convolutions Glorot-uniform)."""
    attention_convs = {
        id(m) for a in model.modules() if isinstance(a, SelfAttention) for m in a.children()
    }
    for m in model.modules():
        if isinstance(m, LabelHead):
            m.reset_parameters()  # zeros: no draw, so the other layers' draws stay as without it
        elif isinstance(m, nn.Embedding):
            nn.init.uniform_(m.weight, -0.05, 0.05)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            weight = _weight_of(m)
            if id(m) in attention_convs:
                nn.init.xavier_uniform_(weight)
            elif init == "normal":
                nn.init.trunc_normal_(weight, std=0.02, a=-0.04, b=0.04)
            else:
                nn.init.orthogonal_(weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class OfflineGenerator(nn.Module):
    """The generator behind the drop-in interface: (x1, x2 int32) -> NHWC images."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
        y = None if x2 is None else x2.long()
        return self.generator(x1, y).permute(0, 2, 3, 1)  # (N, 32, 32, C)


class OfflineEncoder(nn.Module):
    """The encoder behind the offline interface: NHWC images -> latents."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.permute(0, 3, 1, 2))  # (N, z_dim)


def offline_module(model: BigBiGAN, encoder: bool = False) -> nn.Module:
    """The generator (or encoder; their EMA copies if kept) with the offline interface, every
    spectral norm folded into a plain weight W / sigma: no power-iteration buffers remain, so it
    exports as ordinary layers.

    The folding happens on a rebuilt copy: `copy.deepcopy` of a parametrized module shares its
    generated class, and removing the parametrization from the copy would break the original.
    """
    from torch.nn.utils import parametrize

    frozen = BigBiGAN(model.cfg, initialize=False)
    frozen.load_state_dict(model.state_dict())
    frozen.eval().requires_grad_(False)
    for m in [m for m in frozen.modules() if parametrize.is_parametrized(m, "weight")]:
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    wrapper = OfflineEncoder(frozen.encoder) if encoder else OfflineGenerator(frozen.generator)
    return wrapper.eval()
