"""Which ONNX value is which PyTorch module's output, for `bigbigan layerwise` (the search
itself: bigbigan.compare.layerwise).

The dynamo exporter tags each node with the module path it came from (metadata
`pkg.torch.onnx.name_scopes`, e.g. `['', 'generator', 'generator.block1', ...]`). A module's
output is the value its nodes produce that is used outside them (or is a graph output). The
export's optimiser fuses some layers (a conv followed by a batch norm becomes one Conv that
carries the batch norm's scope); the earlier module then has no tensor of its own. It is listed
as fused into the later one, whose row names it, so a fault in either is still found. The
matched values are then made graph outputs of an in-memory copy of the model, a chunk at a time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from bigbigan.errors import BigBiGANError

NAME_SCOPES = "pkg.torch.onnx.name_scopes"  # node metadata written by torch.onnx (dynamo=True)
ROOT = ""  # the whole model's module path


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
