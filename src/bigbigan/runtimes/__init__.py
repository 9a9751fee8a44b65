"""Runtimes: one Runner interface, one file per backend, a registry by name.

    with open_runner("G.onnx") as runner:          # backend chosen by file type
        images = runner.infer({"x1": noise, "x2": labels})["images"]

Importing this package is cheap: each backend imports its heavy library only when used.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from bigbigan import limits
from bigbigan.errors import BigBiGANError
from bigbigan.fsutil import note_input
from bigbigan.importers import is_frozen_graph, resolve_model
from bigbigan.interface import check_feed
from bigbigan.runtimes.aoti import AOTIRunner
from bigbigan.runtimes.base import Runner
from bigbigan.runtimes.onnxruntime import OnnxRuntimeRunner
from bigbigan.runtimes.streams import StreamedRunner
from bigbigan.runtimes.tensorrt import TensorRTRunner
from bigbigan.runtimes.torch import TorchRunner

CONFIG_FILE = "checkpoint.json"  # = training.checkpoint.CONFIG_FILE (importing it loads torch)

RUNNERS: dict[str, type[Runner]] = {
    cls.name: cls for cls in (TorchRunner, OnnxRuntimeRunner, AOTIRunner, TensorRTRunner)
}

__all__ = [
    "RUNNERS",
    "AOTIRunner",
    "OnnxRuntimeRunner",
    "Runner",
    "StreamedRunner",
    "TensorRTRunner",
    "TorchRunner",
    "backend_for",
    "check_feed",
    "known_types",
    "open_runner",
]


def known_types() -> str:
    """`a checkpoint directory or checkpoint.json (torch), .onnx/.ort (onnxruntime), ...`."""
    kinds = [f"a checkpoint directory or {CONFIG_FILE} (torch)"]
    kinds += [
        f"{'/'.join(cls.suffixes)} ({name})" for name, cls in RUNNERS.items() if name != "torch"
    ]
    kinds.append(".pb (a frozen TensorFlow graph, imported to ONNX once)")
    return ", ".join(kinds)


def backend_for(path: str | Path) -> str:
    """The backend that opens `path`, by file type: a directory or checkpoint.json is torch."""
    path = Path(path)
    if not path.exists():
        raise BigBiGANError(f"{path}: no such file or directory")
    if path.is_dir() or path.name == CONFIG_FILE:
        return TorchRunner.name
    if is_frozen_graph(path):
        return OnnxRuntimeRunner.name  # run as its cached ONNX import
    suffix = path.suffix.lower()
    for name, cls in RUNNERS.items():
        if name != TorchRunner.name and suffix in cls.suffixes:
            return name
    raise BigBiGANError(
        f"{path}: unknown model type {suffix or '(no extension)'!r}; expected {known_types()}"
    )


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
    elif backend not in RUNNERS:
        raise BigBiGANError(f"--backend {backend}: expected one of {', '.join(RUNNERS)}")
    cls = RUNNERS[backend]
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
