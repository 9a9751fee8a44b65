"""The CPU features that decide how reduced precision is built on this machine.

int8 and bf16 depend on the vector ISA far more than fp32 does: without VNNI, ONNX Runtime's
U8S8 kernels multiply with VPMADDUBSW, whose 16-bit pair sums saturate (its quantisation guide:
use `reduce_range` or U8U8 there), and bf16 without AVX512_BF16 or AMX is emulated and slower
than fp32. Reading the flags is cheap: /proc/cpuinfo (bigbigan.harness.machine), or torch's
dispatch level elsewhere. `isa_class` is the machine record's classification of these flags.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from bigbigan.harness import machine

VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # int8 dot products, no saturation
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # native bf16 matrix arithmetic


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (/proc/cpuinfo); where there is none (not Linux), the flags
    implied by torch's CPU dispatch level, else none."""
    flags = machine.cpu_flags(None)
    if flags:
        return frozenset(flags)
    try:
        import torch

        level = torch.backends.cpu.get_cpu_capability().lower()  # "avx2", "avx512", "default"
    except Exception:  # no torch, or a build without the query
        return frozenset()
    return frozenset({"avx2", "avx512f"} if level == "avx512" else {"avx2"} & {level})


def isa_class(flags: Iterable[str] | None = None) -> str:
    """The best x86 vector ISA class among `flags` (default: this CPU's, `cpu_flags`): `amx`,
    `avx512_vnni`, `avx512`, `avx2` or `baseline` (harness.machine.isa_class)."""
    return machine.isa_class(cpu_flags() if flags is None else flags)


def has_vnni(flags: Iterable[str] | None = None) -> bool:
    """Whether int8 dot products run without saturation (AVX512-VNNI, AVX-VNNI or AMX)."""
    return bool(VNNI_FLAGS & set(cpu_flags() if flags is None else flags))


def has_native_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether bf16 matrix arithmetic is native (AVX512_BF16 or AMX), not emulated."""
    return bool(BF16_FLAGS & set(cpu_flags() if flags is None else flags))


def relevant_flags(flags: Iterable[str] | None = None) -> list[str]:
    """The flags reduced precision cares about, sorted: for sidecars and bench records."""
    wanted = {"avx2", "fma", "avx512f", "avx512bw", *VNNI_FLAGS, *BF16_FLAGS}
    return sorted(wanted & set(cpu_flags() if flags is None else flags))
