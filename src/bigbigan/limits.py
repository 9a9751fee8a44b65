"""Sizes checked before memory is spent: a flag or a file header that asks for more than the
machine has (or than a file holds) is one line naming it, not a traceback or the OOM killer.

Estimates here are lower bounds of what will certainly be allocated, so a refusal is never
wrong; a size that passes can still fail later for lack of memory for activations.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from bigbigan.errors import BigBiGANError


def human(nbytes: float) -> str:
    """`1.5 GiB`."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(nbytes) < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def available_memory() -> int:
    """Bytes of memory available to a new allocation: MemAvailable from /proc/meminfo, else
    the free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_memory(nbytes: int, what: str) -> None:
    """Refuse `what` (e.g. `--batch 1000000000`) when it needs more than available memory."""
    available = available_memory()
    if nbytes > available:
        raise BigBiGANError(
            f"{what}: needs at least {human(nbytes)}, {human(available)} of memory is available"
        )


def check_batch(flag: str, batch: int, bytes_per_sample: int) -> None:
    """`--batch N` of samples of `bytes_per_sample` each must fit in memory."""
    check_memory(batch * bytes_per_sample, f"{flag} {batch}")


def spec_bytes(specs, batch: int = 1) -> int:
    """Bytes of one batch of every tensor in `specs` (TensorSpecs; a dynamic dim counts 1)."""
    return sum(
        batch * np.dtype(s.dtype).itemsize * math.prod(d or 1 for d in s.shape[1:]) for s in specs
    )


def check_streams(streams: int) -> None:
    """`--streams`: at most one single-thread copy of the model per core."""
    cores = cpu_cores()
    if streams > cores:
        raise BigBiGANError(
            f"--streams {streams}: more copies than the {cores} CPU core(s) this process may use"
        )


def check_split(streams: int, micro_batch: int, batch: int) -> None:
    """Streams and micro-batches divide a batch: neither may exceed it."""
    if streams > batch:
        raise BigBiGANError(f"--streams {streams}: more copies than the batch of {batch} samples")
    if micro_batch > batch:
        raise BigBiGANError(f"--micro-batch {micro_batch}: larger than the batch of {batch}")


def model_bytes(cfg) -> int:
    """A lower bound of the float32 weights of a BigBiGAN of `cfg` (a ModelConfig), counted
    from a few layers whose sizes the architecture fixes (DESIGN.md) without building it:
    G's first up-block convolutions and dense layer, the class embeddings, H's first dense
    layer and E's head."""
    ch, z = cfg.ch, cfg.z_dim
    params = 2 * 9 * (4 * ch) ** 2 + (z // 4) * 64 * ch + z * ch + 4 * ch * z
    if cfg.conditional:
        params += cfg.num_classes * (cfg.embed_dim + 4 * ch)
    return 4 * params


def check_npy(path: str | Path) -> None:
    """Read a `.npy` header alone and refuse one whose shape claims more bytes than the file
    holds (np.load would allocate the claimed size first), or a pickled object array."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            reader = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if reader is None:
                return  # np.load gives its own error for other versions
            shape, _, dtype = reader(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as e:
        raise BigBiGANError(f"{path}: not a plain numeric .npy array ({e})") from e
    if dtype.hasobject:
        raise BigBiGANError(f"{path}: holds Python objects (a pickle), expected a numeric array")
    claimed = dtype.itemsize * math.prod(shape)
    if claimed > size - offset:
        raise BigBiGANError(
            f"{path}: header claims {dtype.name} {list(shape)} = {human(claimed)}, "
            f"the file holds {human(size - offset)} of data"
        )
