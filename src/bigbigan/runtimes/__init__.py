"""Runtimes: one Runner interface, one file per backend, one registry (runtimes/registry.py).

    with open_runner("G.onnx") as runner:          # backend chosen by file type
        images = runner.infer({"x1": noise, "x2": labels})["images"]

Importing this package is cheap: the backend modules are imported when first asked for, and
each imports its heavy library only when used. Runner classes are reachable by name here
(`from bigbigan.runtimes import OnnxRuntimeRunner`), as is the `RUNNERS` name -> class map.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from bigbigan import limits
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import note_input
from bigbigan.importers import is_frozen_graph, resolve_model
from bigbigan.runtimes import registry
from bigbigan.runtimes.base import Runner, check_feed
from bigbigan.runtimes.streams import StreamedRunner

CONFIG_FILE = "checkpoint.json"  # = training.checkpoint.CONFIG_FILE (importing it loads torch)
TORCH = "torch"  # the backend of a checkpoint directory or its checkpoint.json

__all__ = [
    "RUNNERS",
    "Runner",
    "StreamedRunner",
    "backend_for",
    "check_feed",
    "known_types",
    "open_runner",
]


def __getattr__(name: str) -> Any:
    """`RUNNERS` and every registered runner class by its class name, loaded on first use."""
    registry.load()
    if name == "RUNNERS":
        return registry.RUNNERS
    for cls in registry.RUNNERS.values():
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def known_types() -> str:
    """`a checkpoint directory or checkpoint.json (torch), .onnx/.ort (onnxruntime), ...`."""
    registry.load()
    kinds = [f"a checkpoint directory or {CONFIG_FILE} ({TORCH})"]
    kinds += [
        f"{'/'.join(cls.suffixes)} ({name})"
        for name, cls in registry.RUNNERS.items()
        if name != TORCH and cls.suffixes
    ]
    kinds.append(".pb (a frozen TensorFlow graph, imported to ONNX once)")
    return ", ".join(kinds)


def backend_for(path: str | Path) -> str:
    """The backend that opens `path`, by file type: a directory or checkpoint.json is torch."""
    path = Path(path)
    if not path.exists():
        raise BigBiGANError(f"{path}: no such file or directory")
    if path.is_dir() or path.name == CONFIG_FILE:
        return TORCH
    if is_frozen_graph(path):
        return "onnxruntime"  # run as its cached ONNX import
    suffix = path.suffix.lower()
    cls = registry.runner_for_suffix(suffix)
    if cls is None or cls.name == TORCH:
        raise BigBiGANError(
            f"{path}: unknown model type {suffix or '(no extension)'!r}; expected {known_types()}"
        )
    return cls.name


def open_runner(
    path: str | Path,
    *,
    backend: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    streams: int = 1,
    micro_batch: int = 0,
    **options: Any,
) -> Runner:
    """A runner for `path`, not yet loaded (use it in a `with` block, or call `load()`).

    The backend is `backend` (`--backend`) or else chosen by file type. The file is checked to
    be what its extension says before returning (a `.pb` is first imported to ONNX, once,
    see bigbigan.importers); `options` are backend keyword options (e.g.
    `encoder=True` for torch, `optimization_level="basic"` for onnxruntime). `streams` > 1
    splits each batch across that many copies of the model, `threads` each (StreamedRunner);
    `micro_batch` > 0 runs larger batches (each copy's share, with streams) in slices of it.
    """
    path = Path(path)
    if streams < 1:
        raise BigBiGANError(f"--streams {streams}: expected a positive number of model copies")
    if micro_batch < 0:
        raise BigBiGANError(f"--micro-batch {micro_batch}: expected 0 (off) or a slice size")
    limits.check_streams(streams)
    if backend is None:
        backend = backend_for(path)
    cls = registry.runner(backend)
    accepted = {
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("device", "threads")
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise BigBiGANError(
            f"backend {backend} takes no option {', '.join(unknown)}"
            + (f" (its options: {', '.join(sorted(accepted))})" if accepted else "")
        )
    if not path.exists():
        raise BigBiGANError(f"{path}: no such file or directory")
    path = resolve_model(path)
    cls.check_file(path)
    note_input(path)

    def make(threads: int | None) -> Runner:
        runner = cls(path, device=device, threads=threads, **options)
        runner.micro_batch = micro_batch
        return runner

    if streams > 1:
        return StreamedRunner(make, streams, path=path, device=device, threads=threads)
    return make(threads)
