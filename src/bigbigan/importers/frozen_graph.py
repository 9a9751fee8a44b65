"""The frozen TensorFlow graph an import starts from: read it, find its interface, run it.

The original system's `save_pb` freezes the TF2 generator into a GraphDef with placeholders
`x1` float32 [256, 100] and `x2` int32 [256] and output `Identity:0` NHWC [256, 32, 32, C].
`load_frozen_graph` reads such a file, names its inputs and output as this project's offline
interface does (`x1`, `x2`, `images`), and runs it once in TensorFlow on seeded inputs: that
output is what the ONNX import (bigbigan.importers.tensorflow) and a recovered checkpoint
(bigbigan.importers.checkpoint_recovery) are validated against.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.importers.graph_rewrite import (
    baked_batch,
    import_graph,
    node_of,
    placeholder_shape,
    placeholders,
    tensor_name,
)
from bigbigan.interface import TensorSpec

EXTRA = "pip install 'bigbigan[tf]'"
DEFAULT_BATCH = 256  # validation batch of a graph that bakes none
OUTPUT_NODE = "Identity"  # a frozen tf.function's output


def import_tensorflow() -> tuple[Any, Any]:
    """(tensorflow, tf2onnx), quietly; missing ones name the extra to install."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as e:
        raise BigBiGANError(
            f"importing a TensorFlow .pb needs TensorFlow and tf2onnx ({e.name or e} is not "
            f"installed): {EXTRA}"
        ) from e
    for name in ("tf2onnx", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return tf, tf2onnx


def read_graph_def(tf: Any, path: Path) -> Any:
    """The GraphDef in a frozen `.pb`; anything else is a one-line error naming the file."""
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise BigBiGANError(f"{path}: no such file")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeError) as e:
        raise BigBiGANError(f"{path}: not a frozen TensorFlow GraphDef ({e})") from e
    if not graph_def.node:
        raise BigBiGANError(f"{path}: not a frozen TensorFlow GraphDef (no nodes)")
    variables = [n.name for n in graph_def.node if n.op in ("VarHandleOp", "VariableV2")]
    if variables:
        raise BigBiGANError(
            f"{path}: holds variables ({variables[0]}, ...), not a frozen graph; freeze it with "
            "convert_variables_to_constants_v2 first"
        )
    return graph_def


@dataclass
class Interface:
    """The graph's tensors and the names they get in the ONNX."""

    inputs: list[tuple[str, str, np.dtype]]  # (TF tensor, ONNX name, dtype) in input order
    output: tuple[str, str]  # (TF tensor, ONNX name)


def find_interface(path: Path, graph_def: Any, tf: Any) -> Interface:
    """Inputs: the placeholders, named `x1`/`x2` as the original's are (or by role: float noise
    [N, z] -> x1, int labels [N] -> x2); output: `Identity`, else the one unconsumed node."""
    from bigbigan.interface import GENERATOR_INPUTS, GENERATOR_OUTPUT

    holders = placeholders(graph_def)
    if not holders:
        raise BigBiGANError(f"{path}: no Placeholder inputs in the graph")
    found = []
    for node in holders:
        dtype = np.dtype(tf.as_dtype(node.attr["dtype"].type).as_numpy_dtype)
        found.append((node.name, dtype, placeholder_shape(node)))
    by_role = {
        ("f", 2): GENERATOR_INPUTS[0],
        ("i", 1): GENERATOR_INPUTS[1],
    }
    roles = [by_role.get((d.kind, len(s) if s else -1)) for _, d, s in found]
    generator = sorted(r or "" for r in roles) == sorted(GENERATOR_INPUTS[: len(found)])
    names = [name for name, _, _ in found]
    if generator and not set(names) <= set(GENERATOR_INPUTS):
        names = [r or "" for r in roles]
    order = sorted(range(len(found)), key=lambda i: names[i])
    inputs = [(tensor_name(found[i][0]), names[i], found[i][1]) for i in order]

    consumed = {node_of(i) for n in graph_def.node for i in n.input}
    by_name = {n.name: n for n in graph_def.node}
    if OUTPUT_NODE in by_name:
        output = OUTPUT_NODE
    else:
        sinks = [
            n.name
            for n in graph_def.node
            if n.name not in consumed and n.op not in ("Const", "NoOp", "Placeholder")
        ]
        if len(sinks) != 1:
            raise BigBiGANError(
                f"{path}: expected one output (a node named {OUTPUT_NODE}), found "
                f"{len(sinks)}: {', '.join(sinks[:6]) or 'none'}"
            )
        output = sinks[0]
    return Interface(inputs, (f"{output}:0", GENERATOR_OUTPUT if generator else output))


def label_classes(tf: Any, graph_def: Any, label_input: str) -> int | None:
    """The number of classes of a conditional generator: the rows of the embedding table its
    labels index (a Const gathered by the label placeholder, perhaps through Cast/Identity)."""
    by_name = {n.name: n for n in graph_def.node}

    def source(name: str) -> str:
        node = by_name.get(node_of(name))
        while node is not None and node.op in ("Identity", "Cast") and node.input:
            node = by_name.get(node_of(node.input[0]))
        return node.name if node is not None else ""

    for node in graph_def.node:
        if node.op in ("GatherV2", "Gather", "ResourceGather") and len(node.input) >= 2:
            table = by_name.get(source(node.input[0]))
            if source(node.input[1]) == node_of(label_input) and table and table.op == "Const":
                shape = tf.make_ndarray(table.attr["value"].tensor).shape
                if len(shape) == 2:
                    return int(shape[0])
    return None


def run_graph(tf: Any, graph_def: Any, interface: Interface, feed: dict[str, np.ndarray]) -> Any:
    """The frozen graph's output in TensorFlow on an ONNX-named feed."""
    graph = import_graph(tf, graph_def)
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(
            interface.output[0],
            {tf_name: feed[name] for tf_name, name, _ in interface.inputs},
        )


@dataclass
class FrozenGraph:
    """A frozen `.pb`, read and run once: what an import converts and is validated against."""

    path: Path
    tf: Any  # the tensorflow module
    graph_def: Any
    interface: Interface
    baked: int | None  # the batch baked into its shape constants, if any
    classes: int | None  # a conditional generator's number of classes
    feed: dict[str, np.ndarray]  # seeded validation inputs, by ONNX name
    reference: np.ndarray  # the graph's output on them, in TensorFlow


def load_frozen_graph(tf: Any, path: Path, seed: int) -> FrozenGraph:
    """Read `path`, find its interface and run it on seeded inputs (truncated-normal noise,
    labels below its number of classes) at its baked batch, else DEFAULT_BATCH."""
    from bigbigan.interface import random_feed

    graph_def = read_graph_def(tf, path)
    interface = find_interface(path, graph_def, tf)
    baked = baked_batch(graph_def)
    classes = next(
        (label_classes(tf, graph_def, t) for t, name, _ in interface.inputs if name == "x2"), None
    )
    by_name = {n.name: n for n in placeholders(graph_def)}
    specs = [
        TensorSpec(name, dtype, (None, *(placeholder_shape(by_name[node_of(t)]) or ())[1:]))
        for t, name, dtype in interface.inputs
    ]
    feed = random_feed(specs, baked or DEFAULT_BATCH, num_classes=classes, seed=seed)
    reference = run_graph(tf, graph_def, interface, feed)
    return FrozenGraph(path, tf, graph_def, interface, baked, classes, feed, reference)
