"""PyTorch eager: the checkpoint itself, through the offline interface (spectral norm folded)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec, offline_specs
from bigbigan.runtimes.base import Runner, require_cuda

ROLES = ("generator", "encoder")


class TorchRunner(Runner):
    """A checkpoint directory (or its checkpoint.json), run in PyTorch eager mode.

    `encoder=True` (or `role="encoder"`) runs the encoder instead of the generator. `threads`
    sets torch's intra-op thread count, which is process-wide.
    """

    name = "torch"
    suffixes = (".json",)

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        encoder: bool = False,
        role: str | None = None,
    ) -> None:
        super().__init__(path, device=device, threads=threads)
        if role is not None and role not in ROLES:
            raise BigBiGANError(f"--role {role}: expected one of {ROLES}")
        self.encoder = encoder or role == "encoder"
        self._module = None

    @classmethod
    def version(cls) -> str:
        import torch

        return torch.__version__

    @classmethod
    def check_file(cls, path: Path) -> None:
        from bigbigan.training import checkpoint

        checkpoint.read(path)  # one-line errors for a missing or foreign checkpoint.json

    def _load_impl(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        import torch

        from bigbigan.model.networks import offline_module
        from bigbigan.training.checkpoint import load_model

        require_cuda(self.device, "the torch backend")
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        model, ckpt = load_model(self.path)
        self._module = offline_module(model, encoder=self.encoder).eval().to(self.device)
        return offline_specs(ckpt.model, self.encoder)

    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(feed[spec.name]).to(self.device) for spec in self.inputs]
        with torch.inference_mode():
            out = self._module(*args)
        return {self.outputs[0].name: out.cpu().numpy()}

    def device_module(self) -> Callable[..., Any] | None:
        return self._module

    def _close_impl(self) -> None:
        self._module = None
