"""Checkpoints: safetensors for every tensor, JSON for everything else; no pickle anywhere.

Layout of a run (docs/checkpoints.md):

    RUN/checkpoint.json                      the pointer: the newest complete checkpoint's JSON
    RUN/checkpoints/step_000000120/          one complete checkpoint per folder: the last K,
                                             and every N-th step's with --keep-every N
        checkpoint.json  model.safetensors  train_state.safetensors

A commit writes every file of a new step folder under a hidden temporary name, fsyncs them,
renames the folder into place, then atomically replaces the pointer, then prunes folders beyond
the last K. A kill or a full disk at any instant leaves the pointer naming a complete folder
(the previous one until the rename of the pointer, the new one after), so `--resume` always
works. A folder newer than the pointer (a kill between the two renames) is discarded on resume:
the resumed run writes the same bytes again.

The old layout, `checkpoint.json` + `model.safetensors` (+ `train_state.safetensors`) side by
side (version 1, e.g. the shipped model), is read as before; writes always use the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as serialize

from bigbigan import limits
from bigbigan.config import ModelConfig, TrainConfig, from_dict, to_dict
from bigbigan.errors import BigBiGANError, ParameterError
from bigbigan.fsutil import (
    ensure_dir,
    note_input,
    os_error,
    read_json_document,
    remove_stale_temporaries,
    require_regular,
    sha256_file,
    write_bytes,
)
from bigbigan.model.networks import BigBiGAN

FORMAT = "bigbigan-checkpoint"
VERSION = 2  # 2: the pointer names a step folder ("directory"); 1: files beside the JSON
READABLE_VERSIONS = (1, 2)
CONFIG_FILE = "checkpoint.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"
CHECKPOINTS_DIR = "checkpoints"
KEEP = 2  # complete checkpoints a run keeps: the newest and the one before it
_STEP = re.compile(r"^step_(\d{9,})(?:\.(\d+))?$")
_HIDDEN_TMP = re.compile(r"^\.(step_|trash_).*\.tmp$")


@dataclass
class Checkpoint:
    """What `checkpoint.json` says: enough to rebuild the networks without training code."""

    directory: Path  # the folder holding the files (a step folder, or the JSON's own folder)
    model: ModelConfig
    train: TrainConfig | None = None
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. optimizer param_groups
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    source: Path | None = None  # the checkpoint.json it was read from

    @property
    def dataset(self) -> str | None:
        return self.train.dataset if self.train else None


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write tensors atomically as safetensors; return the file's sha256."""
    data = serialize(_cpu(tensors))
    write_bytes(path, data)  # not save_file: it would leave the file owner-only (0600)
    return hashlib.sha256(data).hexdigest()


# --- the commit --------------------------------------------------------------------------------
# Every file-system call of a commit goes through `os` by name, one call per step, so that the
# fault suite can fail or kill each of them in turn (tests/faults/test_checkpoint_commit.py).


def _write_file(path: Path, data: bytes) -> None:
    """Create `path` (it must not exist), write all of `data` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make the renames and creations in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    """Rename `path` to a hidden trash name first, so that a folder half deleted by a kill is
    never taken for a complete checkpoint; then delete it."""
    trash = path.with_name(f".trash_{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


@dataclass(frozen=True)
class Retention:
    """Which complete checkpoints a run keeps: the newest `last`, and every one whose step is a
    multiple of `every` (0: none). Those milestones outlive the rolling window, so a long run's
    history can be evaluated afterwards; the folder the pointer names is never removed."""

    last: int = KEEP
    every: int = 0

    def __post_init__(self) -> None:
        if self.last < 1:
            raise BigBiGANError(f"--keep-checkpoints {self.last}: expected at least 1")
        if self.every < 0:
            raise BigBiGANError(f"--keep-every {self.every}: expected 0 (none) or a step count")

    def removable(self, folders: list[Path]) -> list[Path]:
        """Of a run's step folders (oldest first), the ones it lets go."""
        return [f for f in folders[: -self.last] if not self.every or _step_of(f) % self.every]


DEFAULT_RETENTION = Retention()  # the newest KEEP, no milestones


def _step_of(folder: Path) -> int:
    """The step a folder of `step_folders` holds: `step_000000120.1` -> 120."""
    match = _STEP.match(folder.name)
    assert match is not None, folder  # step_folders yields only names _STEP matches
    return int(match[1])


def step_folders(run: Path) -> list[Path]:
    """The run's complete checkpoint folders, oldest first (by step, then by repeat)."""
    store = run / CHECKPOINTS_DIR
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(store):
            match = _STEP.match(entry.name)
            if match and entry.is_dir(follow_symlinks=False):
                found.append((int(match[1]), int(match[2] or 0), Path(entry.path)))
    return [path for *_, path in sorted(found)]


def _new_folder_name(run: Path, step: int) -> str:
    """`step_000000120`, or `step_000000120.N` if that step was committed before (a run resumed
    from an older checkpoint), so that no complete folder is ever replaced."""
    base = f"step_{step:09d}"
    taken = {p.name for p in step_folders(run)}
    name, n = base, 0
    while name in taken or (run / CHECKPOINTS_DIR / name).exists():
        n += 1
        name = f"{base}.{n}"
    return name


def clean(run: Path) -> None:
    """Remove what a killed commit or write left in a run: hidden temporary step folders and
    trash, temporary files of dead processes. Call it holding the run's lock."""
    store = run / CHECKPOINTS_DIR
    with contextlib.suppress(OSError):
        for entry in os.scandir(store):
            if _HIDDEN_TMP.match(entry.name):
                shutil.rmtree(entry.path, ignore_errors=True)
    remove_stale_temporaries(run)


def discard_after(run: Path, step: int) -> None:
    """Delete step folders newer than `step` (the one a run resumes from): a kill between a
    folder's rename and the pointer's left them; the resumed run writes them again."""
    for folder in step_folders(run):
        if _step_of(folder) > step:
            _remove_tree(folder)


def save(
    directory: str | Path,
    model: BigBiGAN,
    *,
    train: TrainConfig | None = None,
    step: int = 0,
    train_state: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
    keep: Retention = DEFAULT_RETENTION,
) -> Checkpoint:
    """Commit a checkpoint into run directory `directory` (see the module docstring), then let
    go of the complete ones `keep` does not keep. Any OS error is one line, and the previous
    checkpoint stands."""
    run = ensure_dir(directory)
    blobs = {MODEL_FILE: serialize(_cpu(model.state_dict()))}
    if train_state is not None:
        blobs[STATE_FILE] = serialize(_cpu(train_state))
    files = {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}
    document = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "model": to_dict(model.cfg),
        "train": to_dict(train) if train else None,
        "extra": extra or {},
        "files": files,
        "directory": ".",
    }
    store = run / CHECKPOINTS_DIR
    name = _new_folder_name(run, step)
    final = store / name
    staging = store / f".{name}.{os.getpid()}.tmp"
    pointer_tmp = run / f".{CONFIG_FILE}.{os.getpid()}.ptr.tmp"
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(store)
        os.mkdir(staging)
        for file_name, data in blobs.items():
            _write_file(staging / file_name, data)
        _write_file(staging / CONFIG_FILE, _json_bytes(document))
        _fsync_dir(staging)
        os.rename(staging, final)  # the folder is complete: commit point 1
        _fsync_dir(store)
        pointer = {**document, "directory": f"{CHECKPOINTS_DIR}/{name}"}
        _write_file(pointer_tmp, _json_bytes(pointer))
        os.replace(pointer_tmp, run / CONFIG_FILE)  # the run now resumes from it: point 2
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            pointer_tmp.unlink()
        raise os_error(final, e) from e
    except BaseException:  # Ctrl-C: no temporary is left behind either
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            pointer_tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # committed already; this only hastens durability
        _fsync_dir(run)
    for old in keep.removable(step_folders(run)):
        if old != final:
            _remove_tree(old)
    return Checkpoint(final, model.cfg, train, step, extra or {}, files)


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def _json_bytes(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


# --- reading -----------------------------------------------------------------------------------


def resolve(path: str | Path) -> Path:
    """Accept a run/checkpoint directory, a step folder, a `checkpoint.json` or a weights file
    beside it (`model.safetensors`); return the JSON's path. A run without a pointer (killed
    before its first one) resolves to its newest folder."""
    path = Path(path)
    candidate = path / CONFIG_FILE if path.is_dir() else path
    if path.suffix == ".safetensors" and path.is_file():  # what a user sees first
        candidate = path.with_name(CONFIG_FILE)
    if path.is_dir() and not os.path.lexists(candidate):
        if (path / "checkpoint" / CONFIG_FILE).exists():
            candidate = path / "checkpoint" / CONFIG_FILE
        elif folders := step_folders(path):
            candidate = folders[-1] / CONFIG_FILE
    if not os.path.lexists(candidate):
        raise ParameterError("checkpoint", path, f"no {CONFIG_FILE} found")
    return candidate


def _field(doc: dict[str, Any], key: str, kind: type | tuple, where: Path) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BigBiGANError(f"{where}: {key!r} must be {names}, found {value!r:.60}")
    return value


def read(path: str | Path) -> Checkpoint:
    """Parse and validate `checkpoint.json` (tensors are not loaded)."""
    json_path = resolve(path)
    doc = read_json_document(json_path, FORMAT)
    if doc.get("version") not in READABLE_VERSIONS:
        raise BigBiGANError(
            f"{json_path}: checkpoint version {doc.get('version')}, this bigbigan reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    step = _field(doc, "step", int, json_path)
    model = from_dict(ModelConfig, _field(doc, "model", dict, json_path), str(json_path))
    train_doc = _field(doc, "train", (dict, type(None)), json_path)
    train = from_dict(TrainConfig, train_doc, str(json_path)) if train_doc else None
    files = _field(doc, "files", dict, json_path)
    for name, digest in files.items():
        plain = PurePosixPath(name).name == name and name not in ("", ".", "..")
        if not plain or not isinstance(digest, str):
            raise BigBiGANError(f"{json_path}: 'files' must map plain file names to sha256 digests")
    directory = json_path.parent
    if doc["version"] >= 2:
        relative = PurePosixPath(_field(doc, "directory", str, json_path))
        if relative.is_absolute() or ".." in relative.parts:
            raise BigBiGANError(
                f"{json_path}: 'directory' must be a folder inside the run, found {str(relative)!r}"
            )
        directory = json_path.parent / relative
    extra = _field(doc, "extra", dict, json_path) if "extra" in doc else {}
    return Checkpoint(directory, model, train, step, extra, files, json_path)


def files_of(path: str | Path) -> list[Path]:
    """The files a checkpoint path stands for (its JSON and weights), or none if it is not one:
    what a command that reads it must not write over."""
    try:
        ckpt = read(path)
    except BigBiGANError:
        return []
    return [resolve(path), *(ckpt.directory / name for name in ckpt.files)]


def load_tensors(ckpt: Checkpoint, name: str) -> dict[str, torch.Tensor]:
    """Load one of the checkpoint's safetensors files, checking it is the one the JSON names."""
    return load_verified(ckpt.directory, ckpt.files, name)


def load_verified(directory: Path, files: dict[str, str], name: str) -> dict[str, torch.Tensor]:
    """Load `directory/name`, which the JSON beside it lists in `files` with its sha256."""
    path = directory / name
    if name not in files:
        raise BigBiGANError(f"{directory}: its JSON lists no {name}")
    if not os.path.lexists(path):
        raise BigBiGANError(f"{path}: file missing")
    require_regular(path, "safetensors file")
    note_input(path)
    if sha256_file(path) != files[name]:
        raise BigBiGANError(
            f"{path}: contents do not match the sha256 in its JSON (truncated or replaced?)"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise BigBiGANError(f"{path}: not a readable safetensors file ({e})") from e


def check_size(ckpt: Checkpoint) -> None:
    """Refuse a `checkpoint.json` whose architecture holds more parameters than its weights
    file has bytes (or than memory can hold) before a single tensor is allocated."""
    weights = ckpt.directory / MODEL_FILE
    what = f"{ckpt.source or ckpt.directory / CONFIG_FILE}: ch {ckpt.model.ch}"
    needed = limits.model_bytes(ckpt.model)
    if os.path.lexists(weights):
        size = require_regular(weights, "safetensors file").st_size
        if needed > size:
            raise BigBiGANError(
                f"{what} needs {limits.human(needed)} of weights, {weights.name} holds "
                f"{limits.human(size)}"
            )
    limits.check_memory(needed, what)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[BigBiGAN, Checkpoint]:
    """Rebuild the networks from a checkpoint, in eval mode."""
    ckpt = read(path)
    check_size(ckpt)
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
