"""The one run-and-time loop of `infer`, `bench` and `pipeline`, and its statistics.

`time_calls`: `warmup` untimed calls, then timed ones, each between two device synchronises
and read with `perf_counter`; `loop` passes over the batches, or passes until `duration`
seconds have been spent in timed calls. On a GPU a runner whose call splits (torch and aoti:
the `Runner.staged_call` hook) has each call timed as host->device, compute and device->host,
each phase closed by a synchronise.

`latency_stats` summarises the per-call times: min, max, mean, median, p10/p25/p75/p90/p95/p99
(linear percentiles), IQR, std (sample) and cv = std / mean. The median is the number to trust:
a single slow call (a page fault, another process) moves the mean, not the median.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.runtimes.base import PHASES, Runner

Feed = dict[str, np.ndarray]
LATENCY_KEYS = (
    "min", "max", "mean", "median", "p10", "p25", "p75", "p90", "p95", "p99", "iqr", "std", "cv"
)  # fmt: skip
CV_WARNING = 0.05  # a run-to-run coefficient of variation above 5 % is worth a warning


@dataclass
class Timing:
    """What `time_calls` measured."""

    runs_ms: list[float]  # every timed call, in order
    phases_ms: dict[str, list[float]] | None = None  # PHASES per timed call, where split
    warmup: int = 0  # untimed calls made first

    @property
    def stats(self) -> dict[str, float]:
        return latency_stats(self.runs_ms)


def latency_stats(ms: Sequence[float]) -> dict[str, float]:
    """Summary of per-call latencies in milliseconds (see the module docstring); std is the
    sample std (ddof=1), 0 for one call, and so is the cv."""
    x = np.asarray(ms, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise BigBiGANError("latency statistics need at least one run")
    if not np.isfinite(x).all():
        raise BigBiGANError("latency statistics: a run time is NaN or infinite")
    p10, p25, p50, p75, p90, p95, p99 = (
        float(v) for v in np.percentile(x, [10, 25, 50, 75, 90, 95, 99])
    )
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return {
        "min": float(x.min()),
        "max": float(x.max()),
        "mean": mean,
        "median": p50,
        "p10": p10,
        "p25": p25,
        "p75": p75,
        "p90": p90,
        "p95": p95,
        "p99": p99,
        "iqr": p75 - p25,
        "std": std,
        "cv": std / mean if mean > 0 else 0.0,
    }


def _no_sync() -> None:
    """A CPU has no queued work to wait for."""


def time_calls(
    call: Callable[[Feed], Any],
    feeds: Sequence[Feed],
    *,
    warmup: int = 0,
    loop: int = 1,
    duration: float | None = None,
    sync: Callable[[], None] = _no_sync,
    phased: Callable[[Feed], tuple[Any, list[float]]] | None = None,
) -> tuple[Timing, list[Any]]:
    """`warmup` untimed calls (cycling through `feeds`), then `loop` timed passes over `feeds`
    or, given `duration` (seconds), passes until that much time has been spent in timed calls
    (at least one pass). Each timed call is `sync(); start; call(feed); sync(); stop`, or
    `phased(feed)` when given (it times itself). Returns the timing and the outputs of the last
    pass, one per feed.

    A caller timing several candidates runs each one's calls back to back, its warm-up right
    before them: the thread pools of the one before (ONNX Runtime's spinning workers, OpenMP)
    have gone quiet by the first timed call. Interleaving candidates call by call was tried in
    bench and measured each one against the previous one's spinning threads, worst at batch 1.
    """
    if not feeds:
        raise BigBiGANError("nothing to time: no input batches")
    for i in range(warmup):
        call(feeds[i % len(feeds)])
    runs: list[float] = []
    phases: dict[str, list[float]] | None = {k: [] for k in PHASES} if phased else None
    outputs: list[Any] = []
    passes = 0
    while True:
        outputs = []
        for feed in feeds:
            if phased is not None and phases is not None:
                out, parts = phased(feed)
                for key, ms in zip(PHASES, parts, strict=True):
                    phases[key].append(ms)
                runs.append(sum(parts))
            else:
                sync()
                start = perf_counter()
                out = call(feed)
                sync()
                runs.append((perf_counter() - start) * 1e3)
            outputs.append(out)
        passes += 1
        if (sum(runs) >= duration * 1e3) if duration is not None else passes >= loop:
            break
    return Timing(runs, phases, warmup), outputs


def time_in_turn(
    runners: Sequence[Runner], feed: Feed, repeats: int
) -> tuple[list[dict[str, np.ndarray]], list[list[float]]]:
    """Each runner's outputs on `feed` (one untimed round, which also warms up) and the seconds
    of its `repeats` timed calls, taken round by round so that a busy moment hits every runner
    alike: how artefacts are compared with each other (`compile --target auto`, int8's speed
    check against fp32)."""
    outputs = [runner.infer(feed) for runner in runners]
    seconds: list[list[float]] = [[] for _ in runners]
    for _ in range(repeats):
        for runner, seen in zip(runners, seconds, strict=True):
            started = perf_counter()
            runner.infer(feed)
            seen.append(perf_counter() - started)
    return outputs, seconds


def time_runner(
    runner: Runner,
    feeds: Sequence[Feed],
    *,
    warmup: int = 0,
    loop: int = 1,
    duration: float | None = None,
    phases: bool = True,
) -> tuple[Timing, list[dict[str, np.ndarray]]]:
    """`time_calls` on a loaded Runner: its `infer`, its `synchronize`, and on a GPU the phase
    split where the backend allows it (not with micro-batches: a sliced call is timed whole)."""
    split = runner.staged_call() if phases and not runner.micro_batch else None
    return time_calls(
        runner.infer,
        feeds,
        warmup=warmup,
        loop=loop,
        duration=duration,
        sync=runner.synchronize,
        phased=split,
    )
