"""Every BigBiGAN in the repository's `models/` folder loads with verified digests, and the
shipped model and the run training there (models/README.md, "in training") resume from what was
committed: a session's training survives only as that commit."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

from bigbigan import shipped
from bigbigan.cli.main import main
from bigbigan.training import checkpoint
from bigbigan.training.data import DATASETS

MODELS = Path(__file__).parents[1] / "models"
FASHION_DIR = DATASETS["fashion_mnist"].default_dir
IN_TRAINING = MODELS / "bigbigan_fashion_mnist_next"
FIRST = MODELS / "bigbigan_fashion_mnist_first"  # the model shipped before, kept for its figures


def bigbigan_folders() -> list[Path]:
    return sorted(
        folder
        for folder in MODELS.iterdir()
        if (folder / checkpoint.CONFIG_FILE).is_file()
        and json.loads((folder / checkpoint.CONFIG_FILE).read_text())["format"] == checkpoint.FORMAT
    )


def test_the_shipped_model_the_first_one_and_the_run_in_training_are_found():
    names = [f.name for f in bigbigan_folders()]
    assert names == [shipped.GAN, FIRST.name, IN_TRAINING.name]


@pytest.mark.parametrize("folder", bigbigan_folders(), ids=lambda f: f.name)
def test_every_model_loads_with_verified_digests(folder):
    model, ckpt = checkpoint.load_model(folder)
    state = checkpoint.load_tensors(ckpt, checkpoint.STATE_FILE)  # resumable: its Adam moments
    assert ckpt.step > 0 and ckpt.train is not None and state
    assert not list(folder.rglob(".*.tmp")), "a temporary of an unfinished write was committed"


def test_the_run_in_training_keeps_one_checkpoint():
    """One step folder, the one the pointer names: a commit of the run carries no stale copy."""
    ckpt = checkpoint.read(IN_TRAINING)
    assert checkpoint.step_folders(IN_TRAINING) == [ckpt.directory]


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="dataset-fashion-mnist not installed")
@pytest.mark.parametrize("folder", [MODELS / shipped.GAN, IN_TRAINING], ids=lambda f: f.name)
def test_the_shipped_model_and_the_run_in_training_resume_where_they_stand(folder, tmp_path):
    """The model cards' `cp -r` then `train --resume`: one more step from the committed one."""
    run = tmp_path / "run"
    shutil.copytree(folder, run)
    committed = checkpoint.read(run)
    main(["train", "--resume", "--out", str(run), "--steps", str(committed.step + 1)])
    resumed = checkpoint.read(run)
    assert resumed.step == committed.step + 1
    assert resumed.train == dataclasses.replace(committed.train, steps=committed.step + 1)
