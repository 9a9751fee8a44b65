"""Fixtures of the fault suite (its tools are in faultkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import TINY_TRAIN

from bigbigan.cli.main import main


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Two shared cores: one torch thread per test process keeps the suite fast and fair."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def full_run(tmp_path_factory) -> Path:
    """An uninterrupted 4-step run that checkpoints every step: the bit-exact reference."""
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("full") / "run"
    argv = ["train", *TINY_TRAIN, "--steps", "4", "--sample-every", "1", "--out", str(out)]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory) -> Path:
    """make-inputs output for the tiny generator (batch 4)."""
    out = tmp_path_factory.mktemp("inputs") / "in"
    assert main(["make-inputs", "--out", str(out), "--batch", "4"]) == 0
    return out
