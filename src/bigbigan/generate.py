"""`bigbigan generate`: the training framework's own output, the reference every backend is
compared with (the original's `gpu_out.bin`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bigbigan.binio import save_bin
from bigbigan.infer import model_num_classes, read_inputs
from bigbigan.runtimes import TorchRunner


def generate(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    device: str = "cpu",
    encoder: bool = False,
) -> np.ndarray:
    """Run the checkpoint in PyTorch eager on the input files; write NHWC float32 to `out`."""
    with TorchRunner(checkpoint, device=device, encoder=encoder) as runner:
        feed = read_inputs(inputs, runner.inputs, model_num_classes(Path(checkpoint)))
        (images,) = runner.infer(feed).values()
    save_bin(out, images)
    return images
