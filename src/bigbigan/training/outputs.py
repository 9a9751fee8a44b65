"""What a run directory shows a person: the loss log, the sample grid and the loss curves.

The log is JSON lines, one per generator/encoder step, appended as training goes; a resumed run
first drops the lines written after its checkpoint, so the log reads as one unbroken run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bigbigan.fsutil import atomic_path, write_text
from bigbigan.images import save_grid
from bigbigan.model.networks import BigBiGAN
from bigbigan.training.sampling import class_labels, truncated_normal

LOG_FILE = "log.jsonl"
SAMPLES_FILE = "samples.png"
LOSSES_FILE = "losses.png"
SAMPLE_SEED = 1234  # fixed noise for the sample grids, independent of the training seed


@torch.no_grad()
def save_samples(model: BigBiGAN, path: Path, n: int = 100) -> None:
    """A grid from fixed noise; each column one class when conditional."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    z = torch.from_numpy(truncated_normal(np.random.default_rng(SAMPLE_SEED), (n, model.cfg.z_dim)))
    y = torch.from_numpy(class_labels(n, model.cfg.num_classes)).long()
    images = model.generator(z.to(device), y.to(device) if model.cfg.conditional else None)
    save_grid(images.float().cpu().numpy(), path, ncol=model.cfg.num_classes)
    model.train(was_training)


def log_rows(path: Path) -> list[dict[str, Any]]:
    """The log's rows; a line a kill cut short (not JSON, or no step) is skipped."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def trim_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from (and cut lines)."""
    if path.is_file():
        rows = [row for row in log_rows(path) if row["step"] <= step]
        write_text(path, "".join(json.dumps(row) + "\n" for row in rows), replaces_input=True)


def plot_losses(log_path: Path, out: Path) -> None:
    """The discriminator's and the generator/encoder's hinge losses against the step."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = log_rows(log_path)
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    steps = [r["step"] for r in rows]
    for key in ("loss_d", "loss_ge"):
        ax.plot(steps, [r[key] for r in rows], label=key, linewidth=0.8)
    ax.set_xlabel("generator/encoder step")
    ax.set_ylabel("hinge loss")
    ax.legend()
    ax.grid(alpha=0.3)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
