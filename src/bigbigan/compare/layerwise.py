"""`bigbigan layerwise` (also `compare --layerwise`): the first layer where an ONNX model and its
PyTorch source part.

How the two sides are lined up:
1. PyTorch: the checkpoint's offline module (spectral norm folded, as exported) with a forward hook
   on every module, leaves and blocks alike. The order the hooks fire is the execution order; a
   dry run on one sample gives that order and every output's size.
2. ONNX: each module's output value, found by the module paths the exporter writes into the
   nodes (bigbigan.compare.layer_matching, which also says how fused layers are reported).
3. In chunks bounded by `memory_mb`, the matched values are made extra graph outputs of a copy of
   the ModelProto (in memory; the file is untouched) and run in ONNX Runtime with graph
   optimisations off, so every name survives; PyTorch is rerun per chunk with hooks on that chunk
   only. Each pair is compared with `check_tolerance`, and the first failing layer in execution
   order is the divergence.
The report's text and JSON are bigbigan.compare.report's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.compare.layer_matching import LayerMatch, chunked, exposed_model, match_layers
from bigbigan.compare.report import LAYER_KEYS
from bigbigan.compare.statistics import streamed_compare
from bigbigan.compare.tolerances import Tolerances
from bigbigan.errors import BigBiGANError
from bigbigan.harness.inputs import resolve_inputs
from bigbigan.harness.machine import peak_rss_mb
from bigbigan.importers import resolve_model
from bigbigan.interface import TensorSpec, check_feed, onnx_specs, read_model_sidecar

DEFAULT_MEMORY_MB = 512  # exposed tensors per chunk, per side (PyTorch and ONNX Runtime)
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


@dataclass
class LayerResult:
    """One matched layer, PyTorch against ONNX Runtime."""

    match: LayerMatch
    stats: dict[str, float]
    passed: bool
    needed: float  # the smallest atol that would have passed (at the layer's rtol)
    atol: float
    rtol: float
    note: str = ""  # e.g. a shape mismatch


@dataclass
class LayerwiseReport:
    """The whole search: every matched layer in execution order, and what was not compared."""

    model: Path
    checkpoint: Path
    batch: int
    statistic: str
    results: list[LayerResult]  # matched layers, in execution order
    unmatched: dict[str, str]  # module path -> why it has no ONNX tensor of its own
    chunks: int
    seconds: float
    peak_rss_mb: float

    @property
    def first_divergence(self) -> LayerResult | None:
        return next((r for r in self.results if not r.passed), None)

    @property
    def passed(self) -> bool:
        return self.first_divergence is None


# ---- the PyTorch side ----


def _module_order(module: Any, args: Sequence[Any]) -> list[tuple[str, str, tuple[int, ...], int]]:
    """Run once and record every module whose forward returned one tensor, in the order the
    forwards finished: (path, class name, per-sample shape, per-sample bytes). A module called
    more than once is dropped (its hooks cannot say which call the ONNX value is)."""
    import torch

    calls: dict[str, int] = {}
    seen: list[tuple[str, str, tuple[int, ...], int]] = []

    def hook(path: str):
        def record(mod: Any, _inputs: Any, output: Any) -> None:
            calls[path] = calls.get(path, 0) + 1
            if isinstance(output, torch.Tensor) and output.dim() >= 1:
                per_sample = output[0]
                size = per_sample.numel() * per_sample.element_size()
                seen.append((path, type(mod).__name__, tuple(per_sample.shape), size))

        return record

    _run_hooked(module, args, hook)
    return [entry for entry in seen if calls[entry[0]] == 1]


def _torch_outputs(module: Any, args: Sequence[Any], paths: set[str]) -> dict[str, np.ndarray]:
    """The outputs of the modules at `paths` on `args`, as numpy, from one forward."""
    found: dict[str, np.ndarray] = {}

    def hook(path: str):
        def record(_mod: Any, _inputs: Any, output: Any) -> None:
            found[path] = output.detach().cpu().numpy().copy()

        return record

    _run_hooked(module, args, hook, paths)
    return found


def _run_hooked(module: Any, args: Sequence[Any], hook: Any, paths: set[str] | None = None) -> None:
    """One inference-mode forward with `hook(path)` on every module (or those in `paths`)."""
    import torch

    handles = [
        m.register_forward_hook(hook(p))
        for p, m in module.named_modules()
        if paths is None or p in paths
    ]
    try:
        with torch.inference_mode():
            module(*args)
    finally:
        for h in handles:
            h.remove()


def checkpoint_for(model_path: Path, checkpoint: str | Path | None) -> tuple[Path, bool]:
    """The checkpoint an ONNX file came from (`--checkpoint`, else its export sidecar), and
    whether the file is the encoder."""
    meta = read_model_sidecar(model_path) or {}
    encoder = meta.get("role") == "encoder"
    if checkpoint is None:
        checkpoint = meta.get("checkpoint")
        if not checkpoint:
            raise BigBiGANError(
                f"{model_path}: no sidecar {model_path.name}.json naming its checkpoint; "
                "pass --checkpoint"
            )
    return Path(checkpoint), encoder


def layerwise(
    model_path: str | Path,
    *,
    checkpoint: str | Path | None = None,
    feed: dict[str, np.ndarray] | None = None,
    inputs: Sequence[str | Path] | None = None,
    batch: int | None = None,
    seed: int = 0,
    tolerances: Tolerances | None = None,
    memory_mb: float = DEFAULT_MEMORY_MB,
    device: str = "cpu",
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> LayerwiseReport:
    """Compare every layer of the ONNX model at `model_path` with its PyTorch source.

    The inputs: `feed` (checked against the ONNX inputs), or `inputs` as `bigbigan infer
    --input` takes them (files, or the first batch of folders), or seeded inputs of `batch`
    samples (the model's static batch, else 256).

    `tolerances`: per-name keys are layer names; default atol 1e-4, rtol 1e-3, elementwise.
    `memory_mb` bounds the tensors exposed per chunk. `progress(text)` is called per chunk.
    """
    import onnx
    import torch

    from bigbigan.model.networks import offline_module
    from bigbigan.training.checkpoint import load_model

    started = time.perf_counter()
    model_path = _onnx_model(model_path, memory_mb)
    ckpt_path, encoder = checkpoint_for(model_path, checkpoint)
    tolerances = tolerances or Tolerances(atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL)

    proto = onnx.load(str(model_path))
    specs, _ = onnx_specs(proto)
    torch_model, ckpt = load_model(ckpt_path)
    module = offline_module(torch_model, encoder=encoder).eval().to(device)
    if feed is None:
        data = resolve_inputs(
            inputs, specs, num_classes=ckpt.model.num_classes, batch=batch, seed=seed
        )
        feed = data.batches[0]
    feed = check_feed(feed, specs, source=str(model_path))
    n = next(iter(feed.values())).shape[0] if feed else 1
    args = [torch.from_numpy(feed[s.name]).to(device) for s in specs]
    _check_interface(module, specs, args, model_path)

    if threads is not None:
        torch.set_num_threads(threads)
    order = _module_order(module, [a[:1] for a in args])
    matches, unmatched = match_layers(proto.graph, order)
    if not matches:
        raise BigBiGANError(f"{model_path}: no ONNX tensor matches a PyTorch module output")
    tolerances.check_names({m.layer for m in matches})

    run_onnx = _exposing_runner(model_path, proto, feed, device, threads)
    results: list[LayerResult] = []
    chunks = list(chunked(matches, n, memory_mb))
    for k, chunk in enumerate(chunks):
        if progress is not None:
            progress(f"chunk {k + 1}/{len(chunks)}: {len(chunk)} layers")
        onnx_values = run_onnx([m.value for m in chunk])
        torch_values = _torch_outputs(module, args, {m.path for m in chunk})
        for m in chunk:
            results.append(
                _compare_layer(m, torch_values.pop(m.path), onnx_values.pop(m.value), tolerances)
            )
    return LayerwiseReport(
        model=model_path,
        checkpoint=ckpt.directory,
        batch=n,
        statistic=tolerances.statistic,
        results=results,
        unmatched=unmatched,
        chunks=len(chunks),
        seconds=time.perf_counter() - started,
        peak_rss_mb=peak_rss_mb(),
    )


def _onnx_model(model_path: str | Path, memory_mb: float) -> Path:
    """The `.onnx` to search (a TensorFlow `.pb`: its cached ONNX import), checked."""
    from bigbigan.runtimes.onnxruntime import check_model_file

    model_path = resolve_model(model_path)
    if model_path.suffix.lower() != ".onnx":
        raise BigBiGANError(
            f"{model_path}: --layerwise needs an .onnx model (an ORT-format or compiled file "
            "cannot have its intermediate tensors exposed)"
        )
    if not memory_mb > 0:
        raise BigBiGANError(f"--layerwise-memory {memory_mb}: expected a positive number of MB")
    check_model_file(model_path)
    return model_path


def _exposing_runner(
    model_path: Path, proto: Any, feed: dict[str, np.ndarray], device: str, threads: int | None
) -> Callable[[list[str]], dict[str, np.ndarray]]:
    """`run(values)`: those ONNX values on `feed`, from a session on a copy of `proto` that
    exposes them, built and dropped per call (graph optimisations off, so every name survives;
    no memory arena, so the tensors go back after each chunk)."""
    from bigbigan.runtimes.onnxruntime import import_onnxruntime, providers_for

    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads

    def run(values: list[str]) -> dict[str, np.ndarray]:
        try:
            session = ort.InferenceSession(
                exposed_model(proto, values), options, providers=providers_for(device)
            )
            return dict(zip(values, session.run(values, feed), strict=True))
        except BigBiGANError:
            raise
        except Exception as e:  # onnxruntime raises its own, unexported exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BigBiGANError(
                f"{model_path}: ONNX Runtime failed on exposed layers: {first}"
            ) from e

    return run


def _check_interface(module: Any, inputs: list[TensorSpec], args: list[Any], path: Path) -> None:
    """The checkpoint must be the one this file was exported from, at least in its interface."""
    import torch

    try:
        with torch.inference_mode():
            module(*[a[:1] for a in args])
    except Exception as e:  # a mismatched checkpoint fails inside torch with any error type
        names = ", ".join(s.name for s in inputs)
        raise BigBiGANError(
            f"{path}: its inputs ({names}) do not fit the checkpoint's model "
            f"({type(e).__name__}); pass the --checkpoint it was exported from"
        ) from e


def _compare_layer(
    m: LayerMatch, ref: np.ndarray, found: np.ndarray, tolerances: Tolerances
) -> LayerResult:
    """One layer's PyTorch output `ref` against ONNX Runtime's `found` (same size, any shape)."""
    atol, rtol = tolerances.lookup(m.layer)
    note = ""
    if found.shape != ref.shape:
        if found.size != ref.size:
            nan = dict.fromkeys(LAYER_KEYS, math.nan)
            note = f"shape {list(found.shape)} in ONNX, {list(ref.shape)} in PyTorch"
            return LayerResult(m, nan, False, math.nan, atol, rtol, note)
        found = found.reshape(ref.shape)
        note = "reshaped to PyTorch's shape"
    stats, passed, needed = streamed_compare(
        ref,
        found,
        atol=atol,
        rtol=rtol,
        statistic=tolerances.statistic,
        quantile=tolerances.quantile,
    )
    return LayerResult(m, stats, passed, needed, atol, rtol, note)
