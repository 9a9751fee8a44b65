"""What a bench run can be asked for: the defaults, the flags' parsers, and the checks that
refuse a bad selection before any slow step (one line naming the flag)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from bigbigan.errors import BigBiGANError
from bigbigan.runtimes import registry

BATCH_SIZES = (1, 16, 256)
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
DEFAULT_MICRO_BATCH = 32  # AOTInductor packages also run large batches in slices of this size
DEFAULT_STREAMS = os.cpu_count() or 1  # ONNX Runtime rows also run with one copy per core


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """`"1,16,256"` -> (1, 16, 256); anything else is a one-line error."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise BigBiGANError(f"--batch-sizes {text}: expected comma-separated integers") from err
    if not sizes or any(s < 1 for s in sizes):
        raise BigBiGANError(f"--batch-sizes {text}: expected positive integers")
    return sizes


def parse_names(text: str | None, known: Sequence[str], flag: str) -> tuple[str, ...]:
    """A comma-separated subset of `known` (None: all of them)."""
    if text is None:
        return tuple(known)
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise BigBiGANError(f"{flag} {text}: expected a comma-separated subset of {known}")
    return names


def check_settings(
    backends: Sequence[str],
    precisions: Sequence[str],
    device: str,
    repeats: int,
    warmup: int,
    micro_batch: int,
    streams: int,
    threads: int | None,
    max_mean_diff: float,
) -> None:
    """Refuse a bad selection before any slow step, one line naming the flag."""
    if repeats < 1 or warmup < 0:
        raise BigBiGANError(f"--repeats {repeats} / --warmup {warmup}: expected >= 1 / >= 0")
    if micro_batch < 0:
        raise BigBiGANError(f"--micro-batch {micro_batch}: expected 0 (off) or a positive size")
    if streams < 0:
        raise BigBiGANError(f"--streams {streams}: expected 0 or 1 (off) or a number of copies")
    if not max_mean_diff > 0:
        raise BigBiGANError(f"--max-mean-diff {max_mean_diff}: expected a positive number")
    known = registry.bench_backends()
    unknown = [b for b in backends if b not in known]
    if unknown:
        raise BigBiGANError(f"--backends {','.join(unknown)}: expected some of {', '.join(known)}")
    if "torch" not in backends or "fp32" not in precisions:
        raise BigBiGANError(
            "--backends/--precisions must include torch and fp32: PyTorch fp32 is the accuracy "
            "reference"
        )
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise BigBiGANError(f"--device {device}: expected cpu, cuda or cuda:N")
    if threads is not None and threads < 1:
        raise BigBiGANError(f"--threads {threads}: expected a positive integer")
