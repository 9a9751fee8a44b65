"""Throughput mode: one batch split across several copies of a model, each on its own thread.

On a small CPU, one runner using every core spends a measurable share of each batch waiting
for its threads at the end of every operator. Giving each core its own copy of the model with
one thread, and each copy an equal share of the batch, removes those waits: the copies never
synchronise until the batch is done (OpenVINO calls these streams). Measured on the 2-vCPU dev
machine at batch 256, ch=64: ONNX Runtime fp32 1.12-1.18x and int8 1.85x its two-thread session.
Latency of a single image does not improve; use it for batches.

The wrapped runners must release the GIL while they compute (ONNX Runtime and PyTorch do).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec
from bigbigan.runtimes.base import Runner, require_dynamic_batch


class StreamedRunner(Runner):
    """`streams` copies of one model, made by `make(threads)`; each batch is split into
    `streams` contiguous shares run concurrently, and the outputs are joined in order.

    Each copy is loaded and run on its own worker thread, so a backend whose thread setting is
    per OS thread (PyTorch's OpenMP pool) gets it per copy. `threads` is per copy (default 1).
    The model must have a dynamic batch dimension.
    """

    def __init__(
        self,
        make: Callable[[int], Runner],
        streams: int,
        *,
        path: str | Path,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        super().__init__(path, device=device, threads=threads)
        if not isinstance(streams, int) or streams < 2:
            raise BigBiGANError(f"--streams {streams}: expected an integer >= 2 (1 is off)")
        if device != "cpu":
            raise BigBiGANError(f"--streams {streams}: streams are for the CPU, not {device}")
        self.streams = streams
        self._make = make
        self._copies: list[Runner] = []
        self._workers: list[ThreadPoolExecutor] = []
        probe = make(threads or 1)  # not loaded: only its identity
        self.name = probe.name
        self._backend = type(probe)
        if not probe.concurrent:
            raise BigBiGANError(
                f"--streams {streams}: the {probe.name} backend runs calls from several threads "
                "one at a time, so streams would only slow it down; use --threads instead"
            )

    def version(self) -> str:  # type: ignore[override]  # the wrapped backend's
        return self._backend.version()

    @classmethod
    def check_file(cls, path: Path) -> None:
        """Each copy checks its own file when it loads."""

    def _load_impl(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        per_copy = self.threads or 1
        self._workers = [ThreadPoolExecutor(1, f"stream{i}") for i in range(self.streams)]
        try:
            for worker in self._workers:
                self._copies.append(worker.submit(lambda: self._make(per_copy).load()).result())
        except BaseException:
            self._close_impl()
            raise
        first = self._copies[0]
        try:
            require_dynamic_batch(self.path, first.inputs, f"--streams {self.streams}")
        except BigBiGANError:
            self._close_impl()
            raise
        return first.inputs, first.outputs

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = next(iter(feed.values())).shape[0]
        bounds = np.linspace(0, n, self.streams + 1).round().astype(int)
        shares = [
            worker.submit(copy.infer, {k: v[lo:hi] for k, v in feed.items()})
            for worker, copy, lo, hi in zip(
                self._workers, self._copies, bounds[:-1], bounds[1:], strict=True
            )
            if hi > lo
        ]
        parts = [share.result() for share in shares]
        return {spec.name: np.concatenate([p[spec.name] for p in parts]) for spec in self.outputs}

    def _close_impl(self) -> None:
        for worker, copy in zip(self._workers, self._copies, strict=False):
            worker.submit(copy.close).result()
        for worker in self._workers:
            worker.shutdown()
        self._copies, self._workers = [], []
