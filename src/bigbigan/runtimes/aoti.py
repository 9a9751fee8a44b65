"""AOTInductor: a `.pt2` package compiled ahead of time by `bigbigan compile --target aoti`.

The package holds a shared library but no tensor names, so compile writes `X.pt2.json` beside
it: input/output specs, the device it was compiled for, and where it came from.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec, read_model_sidecar
from bigbigan.runtimes.base import Runner, cuda_index, require_cuda
from bigbigan.runtimes.trust import require_trusted

SIDECAR_FORMAT = "bigbigan-aoti"


def read_sidecar(path: Path) -> dict[str, Any]:
    """The package's sidecar, with `inputs`/`outputs` parsed into TensorSpecs."""
    meta = read_model_sidecar(
        path,
        SIDECAR_FORMAT,
        missing="it holds the input/output names; compile packages with "
        "`bigbigan compile --target aoti`",
    )
    assert meta is not None  # `missing` makes a missing sidecar an error
    return meta


class AOTIRunner(Runner):
    """A `.pt2` AOTInductor package, loaded with `torch._inductor.aoti_load_package`.

    A package runs only on the kind of device it was compiled for (its sidecar says which).
    `threads` sets torch's intra-op (OpenMP) thread count, which is process-wide.
    """

    name = "aoti"
    suffixes = (".pt2",)
    concurrent = False  # two threads' calls run one at a time (measured)

    def __init__(
        self, path: str | Path, *, device: str = "cpu", threads: int | None = None
    ) -> None:
        super().__init__(path, device=device, threads=threads)
        self._model = None

    @classmethod
    def version(cls) -> str:
        import torch

        return torch.__version__

    @classmethod
    def check_file(cls, path: Path) -> None:
        if not path.is_file():
            raise BigBiGANError(f"{path}: no such file")
        if not zipfile.is_zipfile(path):
            raise BigBiGANError(f"{path}: not an AOTInductor package (not a zip archive)")
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise BigBiGANError(f"{path}: unreadable zip archive ({e})") from None
        if not any("/data/aotinductor/" in name for name in names):
            raise BigBiGANError(f"{path}: a zip archive, but not an AOTInductor package")
        read_sidecar(path)
        require_trusted(path)  # loading runs its code: only packages compiled here (trust.py)

    def _load_impl(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        import torch
        import torch._inductor

        require_trusted(self.path)  # before torch opens it, whoever built this runner
        meta = read_sidecar(self.path)
        compiled_for = str(meta.get("device", "cpu"))
        if compiled_for.split(":")[0] != self.device.split(":")[0]:
            raise BigBiGANError(
                f"{self.path}: compiled for {compiled_for}, cannot run on --device {self.device}; "
                f"compile again with --device {self.device}"
            )
        require_cuda(self.device, "the aoti backend")
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        index = cuda_index(self.device) if self.device.startswith("cuda") else -1
        try:
            self._model = torch._inductor.aoti_load_package(str(self.path), device_index=index)
        except Exception as e:  # the loader raises RuntimeError and friends from C++
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BigBiGANError(f"{self.path}: AOTInductor cannot load it: {first}") from None
        return meta["inputs"], meta["outputs"]

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(feed[spec.name]).to(self.device) for spec in self.inputs]
        with torch.inference_mode():
            out = self._model(*args)
        values = list(out) if isinstance(out, list | tuple) else [out]
        if len(values) != len(self.outputs):
            raise BigBiGANError(
                f"{self.path}: returned {len(values)} outputs, its sidecar lists "
                f"{len(self.outputs)}"
            )
        return {
            spec.name: value.cpu().numpy() for spec, value in zip(self.outputs, values, strict=True)
        }

    def device_module(self) -> Callable[..., Any] | None:
        return self._model

    def _close_impl(self) -> None:
        self._model = None
