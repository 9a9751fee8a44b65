"""What `bigbigan infer --input` (and `generate`, `compare --layerwise`) resolve to: batches.

`--input` is comma-separated and matched to the model's inputs, checked against its own metadata:
- files: raw `.bin` (with or without sidecar) or `.npy`, one per input, by position or by name
  (`x2:labels.bin,x1:noise.bin`); a `make-inputs` directory stands for its files;
- folders of per-sample files (one folder per input, or one folder with a sub-folder per input
  name): read in sorted order, batched to the model's batch (the last batch padded when the batch
  is static), and `SampleFile` records which samples each file held, so that the outputs can be
  split back into one file per input file;
- nothing: seeded synthetic inputs of the right dtypes and ranges (`interface.random_feed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bigbigan.binio import load_bin, load_npy
from bigbigan.documents import read_sidecar
from bigbigan.errors import BigBiGANError
from bigbigan.importers import resolve_model
from bigbigan.interface import (
    TensorSpec,
    check_feed,
    dtype_mismatch,
    format_shape,
    random_feed,
    validate_values,
)

DEFAULT_BATCH = 256  # the original system's batch
SAMPLE_SUFFIXES = (".bin", ".npy")


@dataclass
class SampleFile:
    """Folder inputs: one file per model input that together hold `count` samples, starting at
    sample `start` of the run, and the output files they produced."""

    inputs: dict[str, Path]
    start: int
    count: int
    outputs: dict[str, Path] = field(default_factory=dict)


@dataclass
class InputSet:
    """What `--input` resolved to."""

    source: str  # "files", "folder" or "synthetic"
    batches: list[dict[str, np.ndarray]]  # one feed per model call, in order
    real: list[int]  # samples in each batch that are not padding
    files: dict[str, list[Path]] = field(default_factory=dict)  # input name -> files read
    groups: list[SampleFile] = field(default_factory=list)  # folder inputs only
    seed: int | None = None  # synthetic inputs only
    padded: int = 0  # samples added to fill the last batch of a static-batch model

    @property
    def samples(self) -> int:
        return sum(self.real)

    @property
    def batch(self) -> int:
        return next(iter(self.batches[0].values())).shape[0] if self.batches[0] else 1


def model_num_classes(path: Path) -> int | None:
    """The label range a model accepts, from its checkpoint or its export/compile sidecar."""
    if path.is_dir() or path.name == "checkpoint.json":
        from bigbigan.training import checkpoint

        return checkpoint.read(path).model.num_classes
    path = resolve_model(path)  # a TensorFlow .pb: its import's sidecar
    try:
        meta = read_sidecar(path) or {}
    except BigBiGANError:  # an unreadable sidecar only costs the label range check
        return None
    model = meta.get("model")
    return model.get("num_classes") if isinstance(model, dict) else None


def load_input(path: str | Path, spec: TensorSpec, batch: int | None = None) -> np.ndarray:
    """One input file: `.npy` (no pickles) or raw `.bin`; checked against the model's input."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        return load_bin(path, spec, batch=batch)
    array = load_npy(path)
    if array.dtype != spec.np_dtype:
        raise dtype_mismatch(str(path), array.dtype, spec)
    if array.ndim == len(spec.shape) - 1:  # one sample without its batch dim
        array = array[None]
    if array.ndim != len(spec.shape) or any(
        want is not None and got != want
        for got, want in zip(array.shape[1:], spec.shape[1:], strict=True)
    ):
        raise BigBiGANError(
            f"{path}: shape {list(array.shape)}, {spec.model_name} expects "
            f"{format_shape(spec.shape)}"
        )
    static = spec.shape[0] if spec.shape else None
    if static is not None and array.shape[0] != static:
        raise BigBiGANError(
            f"{path}: holds a batch of {array.shape[0]}, {spec.model_name} has static batch "
            f"{static}"
        )
    if batch is not None and array.shape[0] != batch:
        raise BigBiGANError(f"{path}: holds a batch of {array.shape[0]}, expected batch {batch}")
    return np.ascontiguousarray(array)


def read_inputs(
    files: Sequence[str | Path], specs: list[TensorSpec], num_classes: int | None
) -> dict[str, np.ndarray]:
    """Load one file per model input, in order, and check sizes, dtypes and values."""
    if len(files) != len(specs):
        names = ", ".join(s.name for s in specs)
        raise BigBiGANError(
            f"--input: {len(files)} file(s) given, the model has {len(specs)} input(s) ({names})"
        )
    feed = {}
    for path, spec in zip(files, specs, strict=True):
        array = load_input(path, spec)
        validate_values(path, array, spec, num_classes)
        feed[spec.name] = array
    return feed


def assign_inputs(items: Sequence[str | Path], specs: list[TensorSpec]) -> dict[str, Path]:
    """`--input` entries -> {input name: path}: all by position, or all as `name:path`."""
    names = [s.name for s in specs]
    named: dict[str, Path] = {}
    positional: list[Path] = []
    for item in items:
        text = str(item)
        name, sep, rest = text.partition(":")
        if sep and name in names and rest:
            if name in named:
                raise BigBiGANError(f"--input: input {name} is given twice")
            named[name] = Path(rest)
        else:
            positional.append(Path(text))
    if named and positional:
        raise BigBiGANError(
            f"--input: give every input as name:file or none ({', '.join(map(str, positional))} "
            f"has no name; the model's inputs are {', '.join(names)})"
        )
    if named:
        missing = [n for n in names if n not in named]
        if missing:
            raise BigBiGANError(
                f"--input: no file for input {', '.join(missing)} (the model's inputs are "
                f"{', '.join(names)})"
            )
        return {n: named[n] for n in names}
    if len(positional) != len(specs):
        raise BigBiGANError(
            f"--input: {len(positional)} file(s) given, the model has {len(specs)} input(s) "
            f"({', '.join(names)})"
        )
    return dict(zip(names, positional, strict=True))


def _expand(items: Sequence[str | Path], specs: list[TensorSpec]) -> list[str | Path]:
    """A make-inputs directory stands for its files; a folder with one sub-folder per input
    name stands for those sub-folders."""
    from bigbigan.inputs import IMAGE_FILE, LABEL_FILE, NOISE_FILE, input_files

    if len(items) != 1 or (":" in str(items[0]) and not Path(items[0]).exists()):
        return list(items)
    path = Path(items[0])
    if not path.is_dir():
        return list(items)
    if any((path / f).is_file() for f in (NOISE_FILE, LABEL_FILE, IMAGE_FILE)):
        return list(input_files(path))
    subdirs = [path / s.name for s in specs]
    if len(specs) > 1 and all(d.is_dir() for d in subdirs):
        return subdirs
    return list(items)


def sample_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)
    if not files:
        raise BigBiGANError(f"--input {folder}: no .bin or .npy files in it")
    return files


def resolve_inputs(
    items: Sequence[str | Path] | None,
    specs: list[TensorSpec],
    *,
    num_classes: int | None,
    batch: int | None = None,
    seed: int = 0,
) -> InputSet:
    """Turn `--input` (or its absence) into the batches to run; see the module docstring."""
    static = next((s.shape[0] for s in specs if s.shape and s.shape[0] is not None), None)
    if batch is not None and static is not None and batch != static:
        raise BigBiGANError(f"--batch {batch}: the model has static batch {static}")
    if not items:
        n = static or batch or DEFAULT_BATCH
        feed = random_feed(specs, n, num_classes=num_classes, seed=seed)
        return InputSet("synthetic", [feed], [n], seed=seed)
    assigned = assign_inputs(_expand(items, specs), specs)
    dirs = [p for p in assigned.values() if p.is_dir()]
    if not dirs:
        feed = {}
        for spec in specs:
            path = assigned[spec.name]
            feed[spec.name] = load_input(path, spec, batch)
            validate_values(path, feed[spec.name], spec, num_classes)
        check_feed(feed, specs, source="--input")
        files = {name: [path] for name, path in assigned.items()}
        return InputSet("files", [feed], [next(iter(feed.values())).shape[0]], files)
    if len(dirs) != len(assigned):
        raise BigBiGANError("--input: give either files or folders, not a mix")
    return _folder_inputs(assigned, specs, num_classes, batch or static or DEFAULT_BATCH, static)


def _folder_inputs(
    folders: dict[str, Path],
    specs: list[TensorSpec],
    num_classes: int | None,
    batch: int,
    static: int | None,
) -> InputSet:
    """Per-sample files, matched across inputs by sorted position, then cut into batches."""
    listing = {name: sample_files(folder) for name, folder in folders.items()}
    counts = {name: len(files) for name, files in listing.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{folders[n]}: {c}" for n, c in counts.items())
        raise BigBiGANError(f"--input: the folders hold different numbers of files ({detail})")
    dynamic = [TensorSpec(s.name, s.dtype, (None, *s.shape[1:])) for s in specs]
    columns: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    groups: list[SampleFile] = []
    start = 0
    for index in range(next(iter(counts.values()))):
        paths = {s.name: listing[s.name][index] for s in specs}
        arrays = {}
        for spec in dynamic:
            array = load_input(paths[spec.name], spec)
            validate_values(paths[spec.name], array, spec, num_classes)
            arrays[spec.name] = array
        sizes = {a.shape[0] for a in arrays.values()}
        if len(sizes) > 1:
            detail = ", ".join(f"{paths[n]}: {a.shape[0]}" for n, a in arrays.items())
            raise BigBiGANError(f"--input: files hold different numbers of samples ({detail})")
        for name, array in arrays.items():
            columns[name].append(array)
        groups.append(SampleFile(paths, start, sizes.pop()))
        start += groups[-1].count
    stems = [next(iter(g.inputs.values())).stem for g in groups]
    if len(set(stems)) != len(stems):
        raise BigBiGANError("--input: two sample files share a name; outputs would collide")
    data = {name: np.concatenate(arrays) for name, arrays in columns.items()}
    batches, real, padded = [], [], 0
    for lo in range(0, start, batch):
        chunk = {name: a[lo : lo + batch] for name, a in data.items()}
        n = next(iter(chunk.values())).shape[0]
        if static is not None and n < static:  # pad with copies of the last sample
            padded += static - n
            chunk = {
                name: np.concatenate([a, np.repeat(a[-1:], static - n, axis=0)])
                for name, a in chunk.items()
            }
        batches.append({name: np.ascontiguousarray(a) for name, a in chunk.items()})
        real.append(n)
    return InputSet("folder", batches, real, dict(listing), groups, padded=padded)
