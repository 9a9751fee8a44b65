"""The reference generator's layers in a frozen TensorFlow graph, for checkpoint recovery
(bigbigan.importers.checkpoint_recovery, which says how each becomes PyTorch weights).

A frozen graph keeps no variables, only what the forward pass computes from constants: a layer
is a data-dependent op (MatMul, Conv2D, ...) whose weight input is a constant subgraph, which
TensorFlow evaluates. Layers are told apart by where they sit in the dataflow and by their
spatial size (a GraphDef's node order is not the order of the forward pass); anything that does
not fit the reference architecture (a count, a position, a shape) is refused as `NotReference`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.importers.graph_rewrite import (
    data_dependent,
    evaluate_constants,
    import_graph,
    node_of,
    tensor_name,
)


class NotReference(BigBiGANError):
    """The graph is not the reference generator; the message says what differs."""


class GraphView:
    """The frozen graph's nodes, consumers and constant (placeholder-free) inputs."""

    def __init__(self, tf: Any, graph_def: Any) -> None:
        self.nodes = {n.name: n for n in graph_def.node}
        self.order = [n.name for n in graph_def.node]
        self.dependent = data_dependent(graph_def)
        self.consumers: dict[str, list[str]] = {}
        for node in graph_def.node:
            for name in node.input:
                if not name.startswith("^"):
                    self.consumers.setdefault(node_of(name), []).append(node.name)
        self.tf, self.graph = tf, import_graph(tf, graph_def)
        self.values: dict[str, np.ndarray] = {}

    def of(self, op: str) -> list[Any]:
        """Data-dependent nodes of `op`, in graph order."""
        return [self.nodes[n] for n in self.order if self.nodes[n].op == op and n in self.dependent]

    def const_input(self, node: Any, index: int) -> str | None:
        """Input `index` of `node` as a tensor name, when it is a constant (no placeholder)."""
        if index >= len(node.input) or node_of(node.input[index]) in self.dependent:
            return None
        return tensor_name(node.input[index])

    def value(self, *tensors: str) -> list[np.ndarray]:
        """Evaluate constant tensors (cached)."""
        missing = [t for t in tensors if t not in self.values]
        for t, v in zip(missing, evaluate_constants(self.tf, self.graph, missing), strict=True):
            self.values[t] = v
        return [self.values[t] for t in tensors]

    def producer(self, name: str, through: tuple[str, ...] = ("Identity",)) -> Any:
        """The node producing `name`, skipping ops in `through`."""
        node = self.nodes[node_of(name)]
        while node.op in through:
            node = self.nodes[node_of(node.input[0])]
        return node

    def only_consumer(self, node: Any, op: str) -> Any | None:
        found = [self.nodes[c] for c in self.consumers.get(node.name, ())]
        found = [c for c in found if c.op == op]
        return found[0] if len(found) == 1 else None


def weighted(g: GraphView, op: str, index: int) -> list[tuple[Any, np.ndarray]]:
    """(node, constant kernel) of every data-dependent `op` whose input `index` is constant."""
    nodes = [n for n in g.of(op) if g.const_input(n, index)]
    values = g.value(*(g.const_input(n, index) for n in nodes))
    return list(zip(nodes, values, strict=True))


def bias_of(g: GraphView, node: Any) -> np.ndarray | None:
    """The constant of the BiasAdd right after `node`, if there is one."""
    bias = g.only_consumer(node, "BiasAdd")
    tensor = g.const_input(bias, 1) if bias is not None else None
    return g.value(tensor)[0] if tensor else None


def _dense_of(g: GraphView, tensor: str) -> Any:
    """The MatMul a CBN's gamma/beta comes from (through Reshape, BiasAdd, Identity)."""
    node = g.producer(tensor, ("Identity", "Reshape", "BiasAdd", "Add", "AddV2"))
    if node.op != "MatMul":
        raise NotReference(f"conditional batch norm {node.name}: expected a Dense, found {node.op}")
    return node


def cbn_layers(g: GraphView) -> list[dict[str, Any]]:
    """Every conditional batch norm, in graph order: (gamma MatMul, beta MatMul, mean, var+eps)."""
    layers = []
    for mul in g.of("Mul"):
        for side in (0, 1):
            const = g.const_input(mul, side)
            if const is None or g.producer(const).op != "Rsqrt":
                continue
            rsqrt = g.producer(const)
            var_eps = tensor_name(rsqrt.input[0])
            gamma = _dense_of(g, mul.input[1 - side])
            mean_mul = next(
                (
                    g.nodes[c]
                    for c in g.consumers.get(mul.name, ())
                    if g.nodes[c].op == "Mul" and any(g.const_input(g.nodes[c], i) for i in (0, 1))
                ),
                None,
            )
            sub = g.only_consumer(mean_mul, "Sub") if mean_mul is not None else None
            if sub is None:
                raise NotReference(f"batch norm at {mul.name}: no shift (beta - mean * scale)")
            mean_tensor = next(
                g.const_input(mean_mul, i) for i in (0, 1) if g.const_input(mean_mul, i)
            )
            mean, var_plus_eps = g.value(mean_tensor, var_eps)
            x_mul = next(
                (
                    g.nodes[c]
                    for c in g.consumers.get(mul.name, ())
                    if g.nodes[c].op == "Mul" and g.nodes[c].name != mean_mul.name
                ),
                None,
            )
            if x_mul is None:
                raise NotReference(f"batch norm at {mul.name}: nothing is normalised")
            x = next(i for i in x_mul.input if node_of(i) != mul.name)
            layers.append(
                {
                    "x": tensor_name(x),
                    "gamma": gamma,
                    "beta": _dense_of(g, sub.input[0]),
                    "mean": mean,
                    "var_plus_eps": var_plus_eps,
                }
            )
    return layers


def _block(g: GraphView, tensor: str) -> str:
    """The up-block whose output has the spatial size of `tensor` (8: block1, ... 32: block3)."""
    size = g.graph.get_tensor_by_name(tensor).shape[1]
    blocks = {8: "block1", 16: "block2", 32: "block3"}
    if size not in blocks:
        raise NotReference(f"{tensor}: spatial size {size}, the reference has 8, 16 or 32")
    return blocks[size]


def conv_role(g: GraphView, node: Any) -> str:
    """A Conv2D's layer, by where it sits: the attention's 1x1 convolutions (with bias; o reads
    the attention's output, f/g/h are told apart by the matmuls their flattenings enter), or a
    block's conv1 (after the upsampling of a ReLU), conv2 (after a ReLU) or skip (1x1, after
    the upsampling of the block input)."""
    source = g.producer(node.input[0])
    block = _block(g, f"{node.name}:0")
    bias = g.only_consumer(node, "BiasAdd")
    if bias is not None:
        if source.op == "Reshape":
            return "G.attention.o"
        flat = g.only_consumer(bias, "Reshape")
        matmul = (
            next(
                (
                    g.nodes[c]
                    for c in g.consumers.get(flat.name, ())
                    if g.nodes[c].op in ("MatMul", "BatchMatMulV2")
                ),
                None,
            )
            if flat is not None
            else None
        )
        if matmul is None:
            raise NotReference(f"attention convolution {node.name}: its output enters no matmul")
        if any(g.producer(i).op == "Softmax" for i in matmul.input):
            return "G.attention.h"
        return "G.attention.f" if node_of(matmul.input[1]) == flat.name else "G.attention.g"
    if source.op == "ResizeNearestNeighbor":
        before = g.producer(source.input[0])
        return f"G.{block}.{'conv1' if before.op == 'Relu' else 'skip'}"
    if source.op == "Relu":
        return f"G.{block}.conv2"
    raise NotReference(
        f"convolution {node.name}: after {source.op}, not where the reference has one"
    )


def cbn_role(g: GraphView, x: str) -> str:
    """A conditional batch norm's layer: bn2 normalises a block's conv1 output (its block by
    size), bn1 a block's input (the block whose input has that size)."""
    if g.producer(x).op == "Conv2D":
        return f"G.{_block(g, x)}.bn2"
    size = g.graph.get_tensor_by_name(x).shape[1]
    blocks = {4: "block1", 8: "block2", 16: "block3"}
    if size not in blocks:
        raise NotReference(f"batch norm input {x}: spatial size {size}, expected 4, 8 or 16")
    return f"G.{blocks[size]}.bn1"


def attention_gain(g: GraphView, o_conv: Any) -> np.ndarray:
    """The attention's gamma: the constant its output convolution is multiplied by."""
    bias = g.only_consumer(o_conv, "BiasAdd")
    mul = g.only_consumer(bias, "Mul") if bias is not None else None
    tensors = [g.const_input(mul, i) for i in (0, 1)] if mul is not None else []
    tensors = [t for t in tensors if t]
    expect("attention gains", len(tensors), 1)
    return g.value(tensors[0])[0].reshape(1)


def expect(what: str, found: int, expected: int) -> None:
    if found != expected:
        raise NotReference(f"expected {expected} {what} (the reference generator), found {found}")
