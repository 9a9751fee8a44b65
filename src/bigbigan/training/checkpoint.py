"""Checkpoints: safetensors for every tensor, JSON for everything else; no pickle anywhere.

A checkpoint is a directory holding `checkpoint.json` (configs, progress, file digests),
`model.safetensors` (all five networks, buffers included) and, for a training run,
`train_state.safetensors` (optimizer moments and RNG states). The JSON is renamed into place
last, so a reader never sees it point at files from another step.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as serialize

from bigbigan.config import ModelConfig, TrainConfig, from_dict, to_dict
from bigbigan.errors import BigBiGANError, ParameterError
from bigbigan.fsutil import ensure_dir, read_json_document, sha256_file, write_bytes, write_text
from bigbigan.model.networks import BigBiGAN

FORMAT = "bigbigan-checkpoint"
VERSION = 1
CONFIG_FILE = "checkpoint.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"


@dataclass
class Checkpoint:
    """What `checkpoint.json` says: enough to rebuild the networks without training code."""

    directory: Path
    model: ModelConfig
    train: TrainConfig | None = None
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. optimizer param_groups
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256

    @property
    def dataset(self) -> str | None:
        return self.train.dataset if self.train else None


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write tensors atomically as safetensors; return the file's sha256."""
    data = serialize({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    write_bytes(path, data)  # not save_file: it would leave the file owner-only (0600)
    return hashlib.sha256(data).hexdigest()


def save(
    directory: str | Path,
    model: BigBiGAN,
    *,
    train: TrainConfig | None = None,
    step: int = 0,
    train_state: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
) -> Checkpoint:
    """Write a checkpoint directory; `checkpoint.json` goes last."""
    directory = ensure_dir(directory)
    files = {MODEL_FILE: write_safetensors(directory / MODEL_FILE, model.state_dict())}
    if train_state is not None:
        files[STATE_FILE] = write_safetensors(directory / STATE_FILE, train_state)
    ckpt = Checkpoint(directory, model.cfg, train, step, extra or {}, files)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "model": to_dict(model.cfg),
        "train": to_dict(train) if train else None,
        "extra": ckpt.extra,
        "files": files,
    }
    write_text(directory / CONFIG_FILE, json.dumps(document, indent=2) + "\n")
    return ckpt


def resolve(path: str | Path) -> Path:
    """Accept a run/checkpoint directory, its `checkpoint.json` or a weights file beside it
    (`model.safetensors`: what a user sees first); return the JSON's path."""
    path = Path(path)
    candidate = path / CONFIG_FILE if path.is_dir() else path
    if path.suffix == ".safetensors" and path.is_file():
        candidate = path.with_name(CONFIG_FILE)
    if path.is_dir() and not candidate.exists() and (path / "checkpoint" / CONFIG_FILE).exists():
        candidate = path / "checkpoint" / CONFIG_FILE
    if not candidate.exists():
        raise ParameterError("checkpoint", path, f"no {CONFIG_FILE} found")
    return candidate


def read(path: str | Path) -> Checkpoint:
    """Parse and validate `checkpoint.json` (tensors are not loaded)."""
    json_path = resolve(path)
    doc = read_json_document(json_path, FORMAT)
    if doc.get("version") != VERSION:
        raise BigBiGANError(
            f"{json_path}: checkpoint version {doc.get('version')}, this bigbigan reads {VERSION}"
        )
    model = from_dict(ModelConfig, doc["model"], str(json_path))
    train = from_dict(TrainConfig, doc["train"], str(json_path)) if doc.get("train") else None
    return Checkpoint(
        json_path.parent, model, train, int(doc["step"]), doc.get("extra", {}), doc["files"]
    )


def load_tensors(ckpt: Checkpoint, name: str) -> dict[str, torch.Tensor]:
    """Load one of the checkpoint's safetensors files, checking it is the one the JSON names."""
    return load_verified(ckpt.directory, ckpt.files, name)


def load_verified(directory: Path, files: dict[str, str], name: str) -> dict[str, torch.Tensor]:
    """Load `directory/name`, which the JSON beside it lists in `files` with its sha256."""
    path = directory / name
    if name not in files:
        raise BigBiGANError(f"{directory}: its JSON lists no {name}")
    if not path.is_file():
        raise BigBiGANError(f"{path}: file missing")
    if sha256_file(path) != files[name]:
        raise BigBiGANError(
            f"{path}: contents do not match the sha256 in its JSON (truncated or replaced?)"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise BigBiGANError(f"{path}: not a readable safetensors file ({e})") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[BigBiGAN, Checkpoint]:
    """Rebuild the networks from a checkpoint, in eval mode."""
    ckpt = read(path)
    model = BigBiGAN(ckpt.model, initialize=False)
    load_state(model, load_tensors(ckpt, MODEL_FILE), ckpt.directory / MODEL_FILE)
    return model.to(device).eval(), ckpt


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """`load_state_dict` with shape and key mismatches turned into one-line errors."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise BigBiGANError(
            f"{source}: does not match the configured architecture "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})"
        )
    for key, value in tensors.items():
        if value.shape != expected[key].shape:
            raise BigBiGANError(
                f"{source}: {key} has shape {list(value.shape)}, "
                f"the configured architecture expects {list(expected[key].shape)}"
            )
    model.load_state_dict(tensors)


def flatten_optimizer(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    """Optimizer state as flat tensors (for safetensors) plus its JSON-able param groups."""
    state = optimizer.state_dict()
    tensors = {
        f"{prefix}.{index}.{key}": value if torch.is_tensor(value) else torch.tensor(value)
        for index, slots in state["state"].items()
        for key, value in slots.items()
    }
    return tensors, state["param_groups"]


def restore_optimizer(
    prefix: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        head, _, rest = key.partition(".")
        if head == prefix:
            index, _, slot = rest.partition(".")
            state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})
