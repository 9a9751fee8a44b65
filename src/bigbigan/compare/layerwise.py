"""`bigbigan compare --layerwise`: the first layer where an ONNX model and its PyTorch source part.

How the two sides are lined up:
1. PyTorch: the checkpoint's offline module (spectral norm folded, as exported) with a forward hook
   on every module, leaves and blocks alike. The order the hooks fire is the execution order; a
   dry run on one sample gives that order and every output's size.
2. ONNX: the dynamo exporter tags each node with the module path it came from (metadata
   `pkg.torch.onnx.name_scopes`, e.g. `['', 'generator', 'generator.block1', ...]`). A module's
   output is the value its nodes produce that is used outside them (or is a graph output). The
   export's optimiser fuses some layers (a conv followed by a batch norm becomes one Conv that
   carries the batch norm's scope); the earlier module then has no tensor of its own. It is
   listed as fused into the later one, whose row names it, so a fault in either is still found.
3. In chunks bounded by `memory_mb`, the matched values are made extra graph outputs of a copy of
   the ModelProto (in memory; the file is untouched) and run in ONNX Runtime with graph
   optimisations off, so every name survives; PyTorch is rerun per chunk with hooks on that chunk
   only. Each pair is compared with `check_tolerance`, and the first failing layer in execution
   order is the divergence.
"""

from __future__ import annotations

import ast
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.compare.statistics import streamed_compare
from bigbigan.errors import BigBiGANError
from bigbigan.harness.inputs import resolve_inputs
from bigbigan.harness.machine import peak_rss_mb
from bigbigan.importers import resolve_model
from bigbigan.interface import TensorSpec, check_feed, onnx_specs, read_model_sidecar

NAME_SCOPES = "pkg.torch.onnx.name_scopes"  # node metadata written by torch.onnx (dynamo=True)
DEFAULT_MEMORY_MB = 512  # exposed tensors per chunk, per side (PyTorch and ONNX Runtime)
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
ROOT = ""  # the whole model's module path
REPORT_KEYS = ("max_abs_diff", "mean_abs_diff", "max_rel_diff", "rmse", "cosine")


@dataclass
class LayerMatch:
    """One PyTorch module output and the ONNX value that computes it."""

    path: str  # module path, e.g. "generator.block2.conv2"; "" for the whole model
    layer: str  # the name reported: the module path, or the graph output's name for the root
    kind: str  # module class, e.g. "Conv2d"
    value: str  # ONNX value name
    node: str  # the ONNX node that produces it
    op: str  # its op type
    sample_shape: tuple[int, ...]  # PyTorch output shape without the batch dim
    sample_bytes: int
    fused: list[str] = field(default_factory=list)  # other modules this node also computes


@dataclass
class LayerResult:
    match: LayerMatch
    stats: dict[str, float]
    passed: bool
    needed: float  # the smallest atol that would have passed (at the layer's rtol)
    atol: float
    rtol: float
    note: str = ""  # e.g. a shape mismatch

    def to_json(self) -> dict[str, Any]:
        def clean(v: float) -> float | str:
            return v if math.isfinite(v) else str(v)

        m = self.match
        return {
            "layer": m.layer,
            "kind": m.kind,
            "onnx_value": m.value,
            "onnx_node": m.node,
            "onnx_op": m.op,
            "fused": m.fused,
            "shape": list(m.sample_shape),
            **{k: clean(v) for k, v in self.stats.items()},
            "atol": self.atol,
            "rtol": self.rtol,
            "needed_atol": clean(self.needed),
            "passed": self.passed,
            "note": self.note,
        }


@dataclass
class LayerwiseReport:
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

    def to_json(self) -> dict[str, Any]:
        first = self.first_divergence
        return {
            "format": "bigbigan-layerwise",
            "version": 1,
            "model": str(self.model),
            "checkpoint": str(self.checkpoint),
            "batch": self.batch,
            "statistic": self.statistic,
            "passed": self.passed,
            "first_divergence": first.to_json() if first else None,
            "layers": [r.to_json() for r in self.results],
            "unmatched": self.unmatched,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


# ---- the ONNX side: which value is which module's output ----


def node_scopes(node: Any) -> list[str] | None:
    """The module paths a node belongs to, outermost first (root `""` included); None when the
    node carries no scope metadata (e.g. one the optimiser created)."""
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            if isinstance(scopes, list) and scopes and all(isinstance(s, str) for s in scopes):
                return [s.split("@")[0] for s in scopes[:-1]]  # the last entry is the op itself
            return None
    return None


def _owner(initializer: str, modules: set[str]) -> str | None:
    """`generator.block2.conv1.weight` -> `generator.block2.conv1` when that is a module."""
    head = initializer
    while "." in head:
        head = head.rsplit(".", 1)[0]
        if head in modules:
            return head
    return None


def _value_shapes(graph: Any) -> dict[str, tuple[int | None, ...]]:
    shapes = {}
    for value in [*graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            dims = tensor.shape.dim
            shapes[value.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None for d in dims
            )
    return shapes


def match_layers(
    graph: Any, order: Sequence[tuple[str, str, tuple[int, ...], int]]
) -> tuple[list[LayerMatch], dict[str, str]]:
    """Line up PyTorch module outputs (`order`: path, class, per-sample shape, per-sample bytes,
    in execution order) with ONNX values by module path. Returns the matches in execution order
    and, for every module without a tensor of its own, the reason."""
    modules = {path for path, _, _, _ in order}
    initializers = {init.name for init in graph.initializer}
    graph_outputs = [o.name for o in graph.output]
    shapes = _value_shapes(graph)
    nodes = list(graph.node)
    scopes = [node_scopes(n) for n in nodes]
    if not any(s for s in scopes):
        raise BigBiGANError(
            f"no layer names in this ONNX file (no {NAME_SCOPES} metadata); --layerwise needs "
            "a model exported by `bigbigan export` (torch.onnx dynamo exporter)"
        )
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for name in n.input:
            consumers.setdefault(name, []).append(i)
    # Which modules each node also computes through fused weights (a conv + batch norm, ...).
    fused_by_node: dict[int, list[str]] = {}
    for i, n in enumerate(nodes):
        inner = scopes[i][-1] if scopes[i] else None
        owners = {_owner(name, modules) for name in n.input if name in initializers}
        fused_by_node[i] = sorted(o for o in owners if o is not None and o != inner)

    matches: list[LayerMatch] = []
    unmatched: dict[str, str] = {}
    fused_into = {m: i for i, owners in fused_by_node.items() for m in owners}
    for path, kind, sample_shape, sample_bytes in order:
        inside = [i for i, s in enumerate(scopes) if s is not None and path in s]
        members = set(inside)
        escaping = []
        for i in inside:
            for out in nodes[i].output:
                users = consumers.get(out, [])
                known_outside = [u for u in users if scopes[u] is not None and u not in members]
                if out in graph_outputs or known_outside:
                    escaping.append(out)
        if path == ROOT:
            escaping = graph_outputs[:1] if len(graph_outputs) == 1 else []
        # More than one candidate: keep those whose static dims agree with PyTorch's, and of
        # those the one produced last (the module's result, not an intermediate it exposes).
        if len(escaping) > 1:
            fitting = [v for v in escaping if v in shapes and _dims_agree(shapes[v], sample_shape)]
            escaping = fitting[-1:] if fitting else []
        if len(escaping) != 1 or escaping[0] not in producer:
            if path in fused_into:
                node = nodes[fused_into[path]]
                unmatched[path] = f"fused into ONNX node {node.name} ({node.op_type})"
            elif not inside:
                unmatched[path] = "no ONNX node carries its name (inlined or an identity)"
            else:
                unmatched[path] = f"{len(escaping)} candidate output values"
            continue
        value = escaping[0]
        index = producer[value]
        label = value if path == ROOT else path
        matches.append(
            LayerMatch(
                path,
                label,
                kind,
                value,
                nodes[index].name,
                nodes[index].op_type,
                sample_shape,
                sample_bytes,
                fused=fused_by_node.get(index, []),
            )
        )
    return matches, unmatched


def _dims_agree(onnx_dims: tuple[int | None, ...], sample_shape: tuple[int, ...]) -> bool:
    if len(onnx_dims) != len(sample_shape) + 1:
        return False
    return all(d is None or d == s for d, s in zip(onnx_dims[1:], sample_shape, strict=True))


def chunked(matches: list[LayerMatch], batch: int, memory_mb: float) -> Iterator[list[LayerMatch]]:
    """Consecutive groups whose tensors at `batch` fit in `memory_mb` (at least one each)."""
    budget = memory_mb * 2**20
    chunk: list[LayerMatch] = []
    used = 0
    for m in matches:
        size = m.sample_bytes * batch
        if chunk and used + size > budget:
            yield chunk
            chunk, used = [], 0
        chunk.append(m)
        used += size
    if chunk:
        yield chunk


def exposed_model(model: Any, values: Sequence[str]) -> bytes:
    """A serialized copy of `model` whose graph outputs are `values` (the file is untouched)."""
    import onnx
    from onnx import helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    known = {v.name: v for v in [*copy.graph.value_info, *copy.graph.output, *copy.graph.input]}
    outputs = []
    for name in values:
        info = onnx.ValueInfoProto()
        if name in known:
            info.CopyFrom(known[name])
        else:
            info = helper.make_empty_tensor_value_info(name)
        outputs.append(info)
    del copy.graph.output[:]
    copy.graph.output.extend(outputs)
    return copy.SerializeToString()


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
    tolerances: Any = None,
    memory_mb: float = DEFAULT_MEMORY_MB,
    device: str = "cpu",
    threads: int | None = None,
    progress: Any = None,
) -> LayerwiseReport:
    """Compare every layer of the ONNX model at `model_path` with its PyTorch source.

    The inputs: `feed` (checked against the ONNX inputs), or `inputs` as `bigbigan infer
    --input` takes them (files, or the first batch of folders), or seeded inputs of `batch`
    samples (the model's static batch, else 256).

    `tolerances`: a `bigbigan.compare.files.Tolerances` whose per-name keys are layer names; default
    atol 1e-4, rtol 1e-3, elementwise. `memory_mb` bounds the tensors exposed per chunk.
    `progress(text)` is called per chunk.
    """
    import onnx
    import torch

    from bigbigan.compare.files import Tolerances
    from bigbigan.model.networks import offline_module
    from bigbigan.runtimes.onnxruntime import check_model_file, import_onnxruntime, providers_for
    from bigbigan.training.checkpoint import load_model

    started = time.perf_counter()
    model_path = resolve_model(model_path)  # a TensorFlow .pb: its cached ONNX import
    if model_path.suffix.lower() != ".onnx":
        raise BigBiGANError(
            f"{model_path}: --layerwise needs an .onnx model (an ORT-format or compiled file "
            "cannot have its intermediate tensors exposed)"
        )
    if not memory_mb > 0:
        raise BigBiGANError(f"--layerwise-memory {memory_mb}: expected a positive number of MB")
    check_model_file(model_path)
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

    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_cpu_mem_arena = False  # give intermediate tensors back after each run
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    results: list[LayerResult] = []
    chunks = list(chunked(matches, n, memory_mb))
    for k, chunk in enumerate(chunks):
        if progress is not None:
            progress(f"chunk {k + 1}/{len(chunks)}: {len(chunk)} layers")
        values = [m.value for m in chunk]
        try:
            session = ort.InferenceSession(
                exposed_model(proto, values), options, providers=providers_for(device)
            )
            onnx_values = dict(zip(values, session.run(values, feed), strict=True))
        except BigBiGANError:
            raise
        except Exception as e:  # onnxruntime raises its own, unexported exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BigBiGANError(
                f"{model_path}: ONNX Runtime failed on exposed layers: {first}"
            ) from None
        del session
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
        ) from None


def _compare_layer(
    m: LayerMatch, ref: np.ndarray, found: np.ndarray, tolerances: Any
) -> LayerResult:
    atol, rtol = tolerances.lookup(m.layer)
    note = ""
    if found.shape != ref.shape:
        if found.size != ref.size:
            nan = dict.fromkeys(REPORT_KEYS, math.nan)
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


def format_report(report: LayerwiseReport) -> str:
    """A table of every matched layer in execution order, then the verdict."""
    width = max([len(_label(r.match)) for r in report.results] + [5])
    head = f"{'#':>3}  {'layer':<{width}}  {'onnx op':<18}"
    head += "".join(f"{k:>15}" for k in REPORT_KEYS) + f"{'needed atol':>13}  result"
    lines = [
        f"layerwise: {report.model} vs PyTorch ({report.checkpoint}), batch {report.batch}, "
        f"statistic {report.statistic}",
        head,
    ]
    for i, r in enumerate(report.results, 1):
        cells = "".join(f"{r.stats[k]:>15.4g}" for k in REPORT_KEYS)
        verdict = "ok" if r.passed else "DIVERGES"
        note = f"  ({r.note})" if r.note else ""
        lines.append(
            f"{i:>3}  {_label(r.match):<{width}}  {r.match.op:<18}{cells}{r.needed:>13.3g}  "
            f"{verdict}{note}"
        )
    if report.unmatched:
        lines.append(f"not compared ({len(report.unmatched)}):")
        lines += [f"  {path or '(root)'}: {why}" for path, why in report.unmatched.items()]
    first = report.first_divergence
    if first is None:
        lines.append(f"all {len(report.results)} matched layers agree within tolerance")
    else:
        m = first.match
        also = f"; the same ONNX node also computes {', '.join(m.fused)}" if m.fused else ""
        lines.append(
            f"first divergence: {m.layer} ({m.kind}; ONNX node {m.node}, {m.op}{also}): "
            f"needed atol {first.needed:.3g} > {first.atol:g} (rtol {first.rtol:g})"
        )
    lines.append(
        f"{len(report.results)} layers in {report.chunks} chunk(s), {report.seconds:.1f} s, "
        f"peak memory {report.peak_rss_mb:.0f} MB"
    )
    return "\n".join(lines)


def _label(m: LayerMatch) -> str:
    return f"{m.layer} (+{','.join(m.fused)})" if m.fused else m.layer
