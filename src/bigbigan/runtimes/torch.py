"""PyTorch eager: the checkpoint itself, through the offline interface (spectral norm folded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigbigan.binio import TensorSpec
from bigbigan.config import ModelConfig
from bigbigan.errors import BigBiGANError
from bigbigan.runtimes.base import Runner, require_cuda

ROLES = ("generator", "encoder")


def offline_specs(
    cfg: ModelConfig, encoder: bool = False
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The offline interface of a model config (DESIGN.md), dynamic batch: (inputs, outputs)."""
    from bigbigan.model.networks import (
        ENCODER_INPUT,
        ENCODER_OUTPUT,
        GENERATOR_INPUTS,
        GENERATOR_OUTPUT,
    )

    image = (None, cfg.resolution, cfg.resolution, cfg.channels)  # NHWC
    z_dim = cfg.z_dim
    if encoder:
        return [TensorSpec(ENCODER_INPUT, "float32", image)], [
            TensorSpec(ENCODER_OUTPUT, "float32", (None, z_dim))
        ]
    inputs = [TensorSpec(GENERATOR_INPUTS[0], "float32", (None, z_dim))]
    if cfg.conditional:
        inputs.append(TensorSpec(GENERATOR_INPUTS[1], "int32", (None,)))
    return inputs, [TensorSpec(GENERATOR_OUTPUT, "float32", image)]


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

    def _close_impl(self) -> None:
        self._module = None
