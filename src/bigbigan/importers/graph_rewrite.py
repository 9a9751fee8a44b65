"""Make a frozen graph's baked batch dynamic, only where that is provably the batch.

A TF2 function traced at a fixed batch (the original's `save_pb` traces at 256) records that
batch in constants: the placeholders' shapes, and reshape targets built from static shapes
(the reference attention's `tf.reshape(v, [inputs.shape[0], h, w, -1])` becomes a constant
`[256, 16, 16, -1]`). Converted as is, such a graph runs at batch 256 only.

`make_batch_dynamic` rewrites the shape input of a Reshape (or of a Conv2DBackpropInput, a
transposed convolution, whose output size Keras builds from the static batch) only when all of
this holds:
- the shape is a constant (a Const, or a subgraph of constants that TensorFlow evaluates), 1-D
  integer, whose element 0 equals the placeholders' batch B;
- the data tensor (the reshaped one; the transposed convolution's input) depends on a
  placeholder (it is data, not a weight), and its static leading dim at batch B is B, so the op
  keeps the batch axis where it is.
Element 0 then becomes "the data tensor's leading dim" (Shape -> Slice -> ConcatV2 with the other
elements), which is the same graph at batch B. The placeholders' batch is relaxed to unknown,
and the result is proven by TensorFlow's shape inference at another batch: every output must
then have that batch (a constant the rule did not prove, e.g. a Tile or Fill with the batch
baked in, fails here and is named). The importer then validates the converted ONNX at several
batch sizes against the original graph (bigbigan.importers.tensorflow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError

PROBE_BATCHES = (3, 5)  # shape inference runs at the first that differs from the baked batch


class BatchNotDynamic(BigBiGANError):
    """The graph's batch cannot be made dynamic safely; the message says where and why."""


# Ops with a shape input whose element 0 is the batch of a data input:
# op -> (index of the shape input, index of the data input).
SHAPE_INPUTS = {
    "Reshape": (1, 0),  # tensor, shape
    "Conv2DBackpropInput": (0, 2),  # input_sizes, filter, out_backprop (a transposed conv)
}


@dataclass(frozen=True)
class BatchRewrite:
    """One op whose baked batch became "the data input's leading dim"."""

    node: str
    op: str  # a key of SHAPE_INPUTS
    shape: tuple[int, ...]  # its constant shape before the rewrite

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "op": self.op, "shape_before": list(self.shape)}


@dataclass
class DynamicGraph:
    graph_def: Any  # the rewritten GraphDef, placeholders with an unknown batch
    rewrites: list[BatchRewrite]
    probe_batch: int  # the batch shape inference proved it at


def tensor_name(name: str) -> str:
    """A node input (`a`, `a:1`) as a tensor name (`a:0`, `a:1`)."""
    return name if ":" in name else f"{name}:0"


def node_of(name: str) -> str:
    """`^a`, `a:1` -> `a`."""
    return name.lstrip("^").split(":")[0]


def placeholders(graph_def: Any) -> list[Any]:
    return [n for n in graph_def.node if n.op == "Placeholder"]


def placeholder_shape(node: Any) -> tuple[int | None, ...] | None:
    """The declared shape (None dims unknown), or None for an unknown rank."""
    shape = node.attr["shape"].shape
    if shape.unknown_rank:
        return None
    return tuple(d.size if d.size >= 0 else None for d in shape.dim)


def baked_batch(graph_def: Any) -> int | None:
    """The batch every placeholder declares as its leading dim, or None if any leaves it open
    (or they disagree, or one is a scalar)."""
    dims = set()
    for node in placeholders(graph_def):
        shape = placeholder_shape(node)
        if not shape:
            return None
        dims.add(shape[0])
    if len(dims) != 1 or None in dims:
        return None
    return dims.pop()


def with_batch(graph_def: Any, batch: int | None) -> Any:
    """A copy whose placeholders declare `batch` (None: unknown) as their leading dim."""
    out = type(graph_def)()
    out.CopyFrom(graph_def)
    for node in placeholders(out):
        dims = node.attr["shape"].shape.dim
        if dims:
            dims[0].size = -1 if batch is None else batch
    return out


def import_graph(tf: Any, graph_def: Any) -> Any:
    """A tf.Graph of `graph_def`; a shape conflict is a BatchNotDynamic naming the node."""
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.graph_util.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.InvalidArgumentError) as e:
            raise BatchNotDynamic(_first_line(e)) from e
    return graph


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def data_dependent(graph_def: Any) -> set[str]:
    """Names of the nodes that depend (through data inputs) on a placeholder."""
    consumers: dict[str, list[str]] = {}
    for node in graph_def.node:
        for name in node.input:
            if not name.startswith("^"):
                consumers.setdefault(node_of(name), []).append(node.name)
    seen = {n.name for n in placeholders(graph_def)}
    stack = list(seen)
    while stack:
        for child in consumers.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def make_batch_dynamic(tf: Any, graph_def: Any, outputs: list[str]) -> DynamicGraph:
    """Rewrite the Reshapes whose constant shapes bake the batch (see the module docstring) and
    relax the placeholders; raise BatchNotDynamic where the result is not provably dynamic."""
    batch = baked_batch(graph_def)
    if batch is None:
        raise BatchNotDynamic("the placeholders declare no common static batch")
    graph = import_graph(tf, graph_def)
    dependent = data_dependent(graph_def)
    candidates = []
    for node in graph_def.node:
        if node.op not in SHAPE_INPUTS:
            continue
        shape_index, data_index = SHAPE_INPUTS[node.op]
        data, shape = tensor_name(node.input[data_index]), tensor_name(node.input[shape_index])
        if node_of(shape) in dependent or node_of(data) not in dependent:
            continue  # a shape computed from the inputs, or a reshaped weight
        dims = graph.get_tensor_by_name(data).shape
        if dims.rank is None or dims.rank == 0 or dims[0] != batch:
            continue
        candidates.append((node.name, shape_index, data, shape))
    values = evaluate_constants(tf, graph, [shape for *_, shape in candidates])
    rewritten = type(graph_def)()
    rewritten.CopyFrom(graph_def)
    by_name = {n.name: n for n in rewritten.node}
    rewrites = []
    for (name, shape_index, data, _), value in zip(candidates, values, strict=True):
        if value.ndim != 1 or value.dtype.kind != "i" or not value.size or value[0] != batch:
            continue
        node = by_name[name]
        node.input[shape_index] = _leading_dim_shape(tf, rewritten, graph, name, data, value)
        rewrites.append(BatchRewrite(name, node.op, tuple(int(v) for v in value)))
    rewritten = tf.compat.v1.graph_util.extract_sub_graph(
        with_batch(rewritten, None), [node_of(o) for o in outputs]
    )
    probe = next(b for b in PROBE_BATCHES if b != batch)
    _prove(tf, rewritten, outputs, probe, batch)
    return DynamicGraph(rewritten, rewrites, probe)


def evaluate_constants(tf: Any, graph: Any, tensors: list[str]) -> list[np.ndarray]:
    """Values of placeholder-free tensors (constant shape subgraphs), in one session run."""
    if not tensors:
        return []
    with tf.compat.v1.Session(graph=graph) as session:
        return [np.asarray(v) for v in session.run(tensors)]


def _leading_dim_shape(
    tf: Any, graph_def: Any, graph: Any, name: str, data: str, value: np.ndarray
) -> str:
    """Add `concat(shape(data)[0:1], value[1:])` to `graph_def`; return its tensor name."""
    prefix = f"{name}/dynamic_batch"
    index = tf.as_dtype(value.dtype).as_datatype_enum
    int32 = tf.int32.as_datatype_enum

    def add(name: str, op: str, inputs: list[str], **attrs: Any) -> str:
        node = graph_def.node.add(name=f"{prefix}/{name}", op=op)
        node.input.extend(inputs)
        for key, attr in attrs.items():
            node.attr[key].CopyFrom(attr)
        return node.name

    def const(name: str, array: np.ndarray) -> str:
        tensor = tf.make_tensor_proto(array)
        dtype = tf.compat.v1.AttrValue(type=tensor.dtype)
        return add(name, "Const", [], value=tf.compat.v1.AttrValue(tensor=tensor), dtype=dtype)

    def dtype(enum: int) -> Any:
        return tf.compat.v1.AttrValue(type=enum)

    shape = add(
        "shape",
        "Shape",
        [data],
        T=dtype(graph.get_tensor_by_name(data).dtype.as_datatype_enum),
        out_type=dtype(index),
    )
    begin = const("begin", np.array([0], np.int32))
    size = const("size", np.array([1], np.int32))
    leading = add("leading", "Slice", [shape, begin, size], T=dtype(index), Index=dtype(int32))
    rest = const("rest", value[1:].astype(value.dtype))
    axis = const("axis", np.array(0, np.int32))
    return add(
        "concat",
        "ConcatV2",
        [leading, rest, axis],
        N=tf.compat.v1.AttrValue(i=2),
        T=dtype(index),
        Tidx=dtype(int32),
    )


def _prove(tf: Any, graph_def: Any, outputs: list[str], probe: int, batch: int) -> None:
    """Shape inference at batch `probe` must give every output that batch."""
    try:
        graph = import_graph(tf, with_batch(graph_def, probe))
    except BatchNotDynamic as e:
        raise BatchNotDynamic(
            f"at batch {probe} instead of {batch}, TensorFlow's shape inference fails: {e}"
        ) from e
    for name in outputs:
        shape = graph.get_tensor_by_name(name).shape
        if shape.rank and shape[0] is not None and shape[0] != probe:
            raise BatchNotDynamic(
                f"at batch {probe} instead of {batch}, output {name} has shape "
                f"{shape.as_list()}: a constant not proven to be the batch still fixes it"
            )
