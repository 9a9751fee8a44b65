"""The layers a replica swaps in so that N processes train as one (see distributed.py).

`ShardedDropout` keeps the single-process dropout masks under data parallelism;
`CPUSyncBatchNorm` computes batch-norm statistics over the global batch on CPUs, where
`torch.nn.SyncBatchNorm` needs a GPU. Both keep the parameters and buffers of the layer they
replace, so a checkpoint's keys do not change.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn


class ShardedDropout(nn.Dropout):
    """Dropout whose mask is this rank's rows of the mask one process would draw for the global
    batch, so masks match the single-process run and no two ranks share one.

    The local input holds `groups` blocks of `local_batch` rows (e.g. [real; fake] in the
    discriminator); the global one holds, per block, the blocks of ranks 0..world-1 in order.
    The mask is drawn as the single-process dropout draws it (on CPUs `bernoulli_` on an
    uninitialised tensor, then scaled), so the torch generator advances exactly as there.
    """

    def __init__(self, p: float, *, rank: int, world_size: int, local_batch: int) -> None:
        super().__init__(p)
        self.rank, self.world_size, self.local_batch = rank, world_size, local_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        groups, rest = divmod(x.shape[0], self.local_batch)
        if rest:
            raise ValueError(f"ShardedDropout: {x.shape[0]} rows, not blocks of {self.local_batch}")
        shape = (groups * self.world_size * self.local_batch, *x.shape[1:])
        keep = 1 - self.p
        if x.device.type == "cpu":  # ATen's CPU dropout: bernoulli_(1 - p), div_(1 - p), mul
            mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep).div_(keep)
        else:  # the fused kernel one process uses on accelerators
            mask = torch.native_dropout(
                torch.ones(shape, dtype=x.dtype, device=x.device), self.p, True
            )[0]
        blocks = mask.view(groups, self.world_size, self.local_batch, *x.shape[1:])
        return x * blocks[:, self.rank].reshape(x.shape)


def shard_dropout(model: nn.Module, *, rank: int, world_size: int, local_batch: int) -> None:
    """Replace every `nn.Dropout` in `model` by a `ShardedDropout` (no state: keys unchanged)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                sharded = ShardedDropout(
                    child.p, rank=rank, world_size=world_size, local_batch=local_batch
                )
                setattr(parent, name, sharded.train(child.training))


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the whole global batch, for gloo on CPUs
    (`torch.nn.SyncBatchNorm` needs a GPU). Per-channel sums of x and x^2 and the count are
    all-reduced in float64 (autograd flows through the all-reduce); eval mode is plain BN.
    Same parameters and buffers as BatchNorm2d, so checkpoints are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        count = torch.tensor([x.numel() // channels], dtype=torch.float64, device=x.device)
        sums = torch.cat(
            [x.sum(dims, dtype=torch.float64), x.square().sum(dims, dtype=torch.float64), count]
        )
        sums = _AllReduceSum.apply(sums)  # (2C + 1,)
        total = sums[-1].detach()
        mean = sums[:channels] / total
        var = (sums[channels : 2 * channels] / total - mean.square()).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - factor).add_(mean.to(x.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(x.dtype), alpha=factor)
        shape = (1, channels) + (1,) * (x.dim() - 2)
        scale = torch.rsqrt(var + self.eps).to(x.dtype).view(shape)
        y = (x - mean.to(x.dtype).view(shape)) * scale
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(model: nn.Module) -> None:
    """Swap every BatchNorm2d for a synchronised one sharing its parameters and buffers:
    `torch.nn.SyncBatchNorm` on accelerators, `CPUSyncBatchNorm` on CPUs."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is not nn.BatchNorm2d:
                continue
            if child.running_mean is not None and child.running_mean.device.type != "cpu":
                setattr(parent, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
                continue
            synced = CPUSyncBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean, synced.running_var = child.running_mean, child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            setattr(parent, name, synced.train(child.training))
