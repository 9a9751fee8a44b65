"""The machine a measurement ran on: CPU, its vector ISA, GPU, memory, library versions.

Every timing this project reports carries this record (the infer summary's `machine`, bench's
`machine`), because the numbers mean little without it: the same CPU model runs int8 and bf16
several times faster with AVX-512 VNNI or AMX than with AVX2 alone (docs/performance.md).
Reading it is cheap: /proc files and the standard library; torch only where a GPU is named.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

CPUINFO = Path("/proc/cpuinfo")
# The flags that decide what reduced precision can use: VNNI (int8 dot products), BF16, AMX.
CPU_FLAGS = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}
ISA_CLASSES = ("amx", "avx512_vnni", "avx512", "avx2", "baseline")  # best first


def _cpuinfo() -> list[str]:
    try:
        return CPUINFO.read_text().splitlines()
    except OSError:
        return []


def cpu_model() -> str:
    """The CPU's model name (`AMD EPYC 7B13`), else what the platform module knows."""
    for line in _cpuinfo():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def cpu_flags(wanted: Iterable[str] | None = CPU_FLAGS) -> list[str]:
    """The CPU's feature flags from /proc/cpuinfo, sorted; only those in `wanted` (default: the
    ones reduced precision cares about; None: all). Empty where there is no /proc/cpuinfo."""
    for line in _cpuinfo():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
            return sorted(flags if wanted is None else flags & set(wanted))
    return []


def isa_class(flags: Iterable[str] | None = None) -> str:
    """The best x86 vector ISA class the CPU has: `amx`, `avx512_vnni`, `avx512`, `avx2`, or
    `baseline` (none of those, or a CPU that lists no flags, e.g. ARM). `flags` defaults to this
    machine's; pass them to classify another machine's record."""
    have = set(cpu_flags(None) if flags is None else flags)
    if have & {"amx_bf16", "amx_int8", "amx_tile"}:
        return "amx"
    if "avx512_vnni" in have:
        return "avx512_vnni"
    if "avx512f" in have:
        return "avx512"
    if "avx2" in have:
        return "avx2"
    return "baseline"


def gpu_name(device: str) -> str | None:
    """The GPU `device` names (via torch), else the first NVIDIA GPU the driver lists, else None."""
    if device.startswith("cuda"):
        try:
            import torch

            from bigbigan.runtimes.base import cuda_index

            return torch.cuda.get_device_name(cuda_index(device))
        except Exception:  # no CUDA build, no driver: fall back to the driver's files
            pass
    root = Path("/proc/driver/nvidia/gpus")
    try:
        for info in sorted(root.glob("*/information")):
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def library_versions() -> dict[str, Any]:
    """torch's threads and CPU capability and the versions of the runtimes that are installed
    (importing them is what a bench run does anyway; infer does not ask)."""
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    for name in ("onnxruntime", "openvino"):
        with contextlib.suppress(ImportError):  # an optional runtime
            info[name] = importlib.import_module(name).__version__
    return info


def machine_info(device: str, *, libraries: bool = False) -> dict[str, Any]:
    """One record of the machine: CPU model, cores (and those this process may use), ISA class
    and flags, GPU, OS, Python, numpy, load average; with `libraries`, `library_versions()`."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "usable_cores": usable,
        "isa": isa_class(),
        "cpu_flags": flags,
        "gpu": gpu_name(device),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
    }
    if libraries:
        info.update(library_versions())
    return info
