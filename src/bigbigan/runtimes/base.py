"""The one runner interface every backend implements (Polygraphy-style).

The public methods (`load`, `infer`, `close`) check state and inputs; each backend implements
only the `_*_impl` methods. Input and output metadata come from the model file itself, and a
feed is validated against it here (`interface.check_feed`), once, for every backend.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec, check_feed

PHASES = ("h2d", "compute", "d2h")  # what `Runner.staged_call` times, in this order
# feed -> (outputs, [host->device, compute, device->host] in ms): see Runner.staged_call
StagedCall = Callable[[dict[str, np.ndarray]], tuple[dict[str, np.ndarray], list[float]]]


def require_dynamic_batch(path: Path, inputs: list[TensorSpec], flag: str) -> None:
    """Refuse `flag` (an option that splits batches) for a model with a static batch dim."""
    static = [spec.name for spec in inputs if not spec.shape or spec.shape[0] is not None]
    if static:
        raise BigBiGANError(
            f"{path}: {flag} splits the batch, but input {static[0]} has a static batch "
            f"dimension; export with a dynamic batch or drop {flag.split()[0]}"
        )


class Runner(ABC):
    """Runs one model file on one backend: `load()`, then `infer(feed)` any number of times,
    then `close()`; or use it as a context manager.

    Subclasses set `name` and `suffixes` and implement `version`, `_load_impl` (which returns the
    model's own input and output specs), `_infer_impl` and `_close_impl`; `check_file` rejects a
    file that is not what its extension says before anything heavy is loaded.
    """

    name: str = ""  # registry name, the `--backend` value
    suffixes: tuple[str, ...] = ()  # file extensions this backend opens, e.g. (".onnx",)
    streams: int = 1  # copies of the model a batch is split across (StreamedRunner)
    # Whether copies of this backend's model compute at the same time when called from two
    # Python threads (StreamedRunner needs it). ONNX Runtime does (measured), PyTorch's operators
    # release the GIL; AOTInductor packages and OpenVINO run the calls one after the other.
    concurrent: bool = True
    # Run batches larger than this in slices of it (0: whole), set by open_runner (--micro-batch):
    # AOTInductor's packages ran 1.4-2.3x faster per image in slices of 32 than at batch 256, as
    # a slice's activations stay in cache (docs/performance.md).
    micro_batch: int = 0

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None):
        self.path = Path(path)
        self.device = device
        self.threads = threads
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.load_seconds: float | None = None
        self.is_loaded = False
        if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
            raise BigBiGANError(f"--device {device}: expected cpu, cuda or cuda:N")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise BigBiGANError(f"--threads {threads}: expected a positive integer")

    # ---- what each backend implements ----

    @classmethod
    @abstractmethod
    def version(cls) -> str:
        """The backend's version string; BigBiGANError if the backend is not installed."""

    @classmethod
    def check_file(cls, path: Path) -> None:
        """Raise a one-line BigBiGANError if `path` is not a model file this backend reads."""
        if not path.exists():
            raise BigBiGANError(f"{path}: no such file")

    @abstractmethod
    def _load_impl(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """Load the model; return its (inputs, outputs) as the model itself describes them."""

    @abstractmethod
    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; `feed` is already validated. Return host arrays keyed by output."""

    def _close_impl(self) -> None:  # noqa: B027 - optional hook
        """Release what `_load_impl` acquired."""

    def _staged_impl(self) -> StagedCall | None:
        """A call split into PHASES (see `staged_call`), where the backend can split one."""
        return None

    # ---- the public, checked interface ----

    def load(self) -> Runner:
        """Check the file, load the model and read its input/output metadata."""
        if self.is_loaded:
            raise BigBiGANError(f"{self.path}: {self.name} runner is already loaded")
        self.check_file(self.path)
        started = time.perf_counter()
        inputs, outputs = self._load_impl()
        if self.micro_batch:
            try:
                require_dynamic_batch(self.path, inputs, f"--micro-batch {self.micro_batch}")
            except BigBiGANError:
                self._close_impl()
                raise
        self.synchronize()
        self.load_seconds = time.perf_counter() - started
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.is_loaded = True
        return self

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate `feed` against the model's inputs, run it, return {output name: array}."""
        if not self.is_loaded:
            raise BigBiGANError(f"{self.path}: {self.name} runner used before load()")
        checked = check_feed(feed, self.inputs, source=str(self.path))
        results = self._sliced(checked) if self.micro_batch else self._infer_impl(checked)
        names = [spec.name for spec in self.outputs]
        if list(results) != names or not all(isinstance(v, np.ndarray) for v in results.values()):
            raise BigBiGANError(  # a backend drifting from the contract, not a user error
                f"{self.path}: {self.name} runner returned {list(results)}, expected arrays {names}"
            )
        return results

    def _sliced(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`_infer_impl` on consecutive slices of `micro_batch` samples, outputs joined."""
        n, size = next(iter(feed.values())).shape[0], self.micro_batch
        if n <= size:
            return self._infer_impl(feed)
        parts = [
            self._infer_impl({k: v[i : i + size] for k, v in feed.items()})
            for i in range(0, n, size)
        ]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def staged_call(self, force: bool = False) -> StagedCall | None:
        """The hook for host<->device phase timing: a function feed -> (outputs, [h2d, compute,
        d2h] ms), each phase closed by a device synchronise, where the backend's call splits
        (torch and aoti on a CUDA device); None where it does not. On the CPU there is no
        transfer to time, so it is None there unless `force` (for tests). The feed must already
        be checked (`check_feed`); `micro_batch` does not apply."""
        if not self.is_loaded:
            raise BigBiGANError(f"{self.path}: {self.name} runner used before load()")
        if not (self.device.startswith("cuda") or force):
            return None
        return self._staged_impl()

    def close(self) -> None:
        if self.is_loaded:
            self._close_impl()
            self.is_loaded = False

    def synchronize(self) -> None:
        """Wait for queued device work: a no-op on the CPU, a CUDA synchronise on a GPU."""
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)

    def __enter__(self) -> Runner:
        if not self.is_loaded:
            self.load()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "loaded" if self.is_loaded else "not loaded"
        return f"{type(self).__name__}({str(self.path)!r}, device={self.device!r}, {state})"


def cuda_index(device: str) -> int:
    """`cuda` -> 0, `cuda:1` -> 1."""
    _, _, index = device.partition(":")
    try:
        return int(index) if index else 0
    except ValueError as err:
        raise BigBiGANError(f"--device {device}: expected cpu, cuda or cuda:N") from err


def require_cuda(device: str, backend: str) -> None:
    """Fail clearly when `device` is a GPU that torch cannot see."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BigBiGANError(f"--device {device}: {backend} needs a CUDA GPU, none is visible")
        if cuda_index(device) >= torch.cuda.device_count():
            raise BigBiGANError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
