"""The CPU's measured ceiling: how fast its best fp32 and int8 convolution kernels run here.

bench's ratios say how far a backend is from plain ONNX Runtime; this says how far either is
from the hardware. It times one 3x3 convolution shaped like the generator's widest layers
(64 -> 64 channels, 16x16, batch 256) in fp32 (oneDNN through PyTorch) and in int8 (PyTorch's
quantised convolution, uint8 activations x int8 weights, once per quantised engine), plus a
square fp32 matrix product, and prints GFLOP/s (GOP/s for int8: a multiply-add counts 2).

    python benchmarks/peak.py [--threads N]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import torch
import torch.ao.nn.quantized.functional as qF
import torch.nn.functional as F

BATCH, CHANNELS, SIDE, KERNEL = 256, 64, 16, 3
CONV_OPS = 2 * BATCH * CHANNELS * CHANNELS * KERNEL * KERNEL * SIDE * SIDE
MATRIX = 2048


def rate(call: Callable[[], object], ops: int, repeats: int) -> float:
    """Operations per second in G, after two untimed calls."""
    call(), call()
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    return ops * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    threads = parser.parse_args().threads
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.rand(BATCH, CHANNELS, SIDE, SIDE)
    w = torch.randn(CHANNELS, CHANNELS, KERNEL, KERNEL)
    a, b = torch.randn(MATRIX, MATRIX), torch.randn(MATRIX, MATRIX)
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"{threads} threads, torch {torch.__version__}, {capability}")
    print(f"fp32 conv2d       {rate(lambda: F.conv2d(x, w, padding=1), CONV_OPS, 5):7.1f} GFLOP/s")
    print(f"fp32 matmul {MATRIX}  {rate(lambda: a @ b, 2 * MATRIX**3, 10):7.1f} GFLOP/s")
    warnings.filterwarnings("ignore", category=UserWarning)  # quantised tensors are deprecated
    for engine in torch.backends.quantized.supported_engines:
        if engine != "none":
            print(f"int8 conv2d ({engine:7}) {int8_conv_rate(engine, x, w):7.1f} GOP/s")


def int8_conv_rate(engine: str, x: torch.Tensor, w: torch.Tensor) -> float:
    """The convolution of `x` by `w` in uint8 x int8 with one quantised engine, in GOP/s."""
    torch.backends.quantized.engine = engine
    qx = torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8)
    qw = torch.quantize_per_tensor(w, w.abs().max().item() / 127, 0, torch.qint8)
    bias = torch.zeros(w.shape[0])
    return rate(lambda: qF.conv2d(qx, qw, bias, padding=1, scale=0.05, zero_point=0), CONV_OPS, 5)


if __name__ == "__main__":
    main()
