"""`bigbigan import --checkpoint-out DIR`: a project checkpoint of G from a frozen reference
generator, so the user's TF model runs through every tool here (aoti, bench, evaluate, layerwise).

A frozen graph keeps no variables, only what the forward pass computes from constants; the
weights are those constant subgraphs, evaluated by TensorFlow:
- each spectral-normed kernel is `W / sigma` (sigma from the stored `u`), i.e. the effective
  weight: it becomes the checkpoint's weight with spectral-norm buffers chosen so that the
  eval-mode sigma is exactly 1 (`_u = u1 / s1`, `_v = v1`, the top singular pair of W / sigma),
  so the PyTorch layer computes W / sigma as the graph does;
- conditional batch norm (`tf.nn.batch_normalization`) is read by its dataflow: the constant
  rsqrt(var + eps) is multiplied by gamma(c) (the gamma Dense) and the constant mean by that
  product, which is subtracted from beta(c) (the beta Dense); var + eps is read off the rsqrt's
  input and refolded for PyTorch's eps;
- the output layer's batch norm (FusedBatchNormV3) gives scale, offset and its statistics;
- the output layer is a stride-1 transposed convolution: its kernel [3, 3, C, ch], flipped in
  space with in/out swapped, is the equivalent ordinary convolution's;
- Dense kernels are transposed, Conv2D kernels permuted to NCHW, and the first Dense's columns
  reordered from NHWC (`reshape [-1, 4, 4, 4ch]`) to the NCHW view PyTorch takes.
Layers are told apart by where they sit in the dataflow and by their spatial size (a GraphDef's
node order is not the order of the forward pass); anything that does not fit the reference
architecture (a count, a position, a shape) is refused as "not the reference generator". The
result is verified by running it in PyTorch against the frozen graph in TensorFlow on the same
inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.importers.graph_rewrite import (
    _data_dependent,
    _evaluate,
    import_graph,
    node_of,
    tensor_name,
)


class NotReference(BigBiGANError):
    """The graph is not the reference generator; the message says what differs."""


@dataclass
class RecoveryReport:
    directory: Path
    max_abs_diff: float  # PyTorch (recovered) vs TensorFlow (frozen graph)
    mean_abs_diff: float
    config: dict[str, Any]


class _Graph:
    """The frozen graph's nodes, consumers and constant (placeholder-free) inputs."""

    def __init__(self, tf: Any, graph_def: Any) -> None:
        self.nodes = {n.name: n for n in graph_def.node}
        self.order = [n.name for n in graph_def.node]
        self.dependent = _data_dependent(graph_def)
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
        for t, v in zip(missing, _evaluate(self.tf, self.graph, missing), strict=True):
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


def _weighted(g: _Graph, op: str, index: int) -> list[tuple[Any, np.ndarray]]:
    """(node, constant kernel) of every data-dependent `op` whose input `index` is constant."""
    nodes = [n for n in g.of(op) if g.const_input(n, index)]
    values = g.value(*(g.const_input(n, index) for n in nodes))
    return list(zip(nodes, values, strict=True))


def _bias_of(g: _Graph, node: Any) -> np.ndarray | None:
    """The constant of the BiasAdd right after `node`, if there is one."""
    bias = g.only_consumer(node, "BiasAdd")
    tensor = g.const_input(bias, 1) if bias is not None else None
    return g.value(tensor)[0] if tensor else None


def _dense_of(g: _Graph, tensor: str) -> Any:
    """The MatMul a CBN's gamma/beta comes from (through Reshape, BiasAdd, Identity)."""
    node = g.producer(tensor, ("Identity", "Reshape", "BiasAdd", "Add", "AddV2"))
    if node.op != "MatMul":
        raise NotReference(f"conditional batch norm {node.name}: expected a Dense, found {node.op}")
    return node


def _cbn_layers(g: _Graph) -> list[dict[str, Any]]:
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


def _block(g: _Graph, tensor: str) -> str:
    """The up-block whose output has the spatial size of `tensor` (8: block1, ... 32: block3)."""
    size = g.graph.get_tensor_by_name(tensor).shape[1]
    blocks = {8: "block1", 16: "block2", 32: "block3"}
    if size not in blocks:
        raise NotReference(f"{tensor}: spatial size {size}, the reference has 8, 16 or 32")
    return blocks[size]


def _conv_role(g: _Graph, node: Any) -> str:
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


def _cbn_role(g: _Graph, x: str) -> str:
    """A conditional batch norm's layer: bn2 normalises a block's conv1 output (its block by
    size), bn1 a block's input (the block whose input has that size)."""
    if g.producer(x).op == "Conv2D":
        return f"G.{_block(g, x)}.bn2"
    size = g.graph.get_tensor_by_name(x).shape[1]
    blocks = {4: "block1", 8: "block2", 16: "block3"}
    if size not in blocks:
        raise NotReference(f"batch norm input {x}: spatial size {size}, expected 4, 8 or 16")
    return f"G.{blocks[size]}.bn1"


def _attention_gain(g: _Graph, o_conv: Any) -> np.ndarray:
    """The attention's gamma: the constant its output convolution is multiplied by."""
    bias = g.only_consumer(o_conv, "BiasAdd")
    mul = g.only_consumer(bias, "Mul") if bias is not None else None
    tensors = [g.const_input(mul, i) for i in (0, 1)] if mul is not None else []
    tensors = [t for t in tensors if t]
    _expect("attention gains", len(tensors), 1)
    return g.value(tensors[0])[0].reshape(1)


def _expect(what: str, found: int, expected: int) -> None:
    if found != expected:
        raise NotReference(f"expected {expected} {what} (the reference generator), found {found}")


def _spectral(prefix: str, weight: np.ndarray, dim: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """State-dict entries of a spectral-normed layer computing exactly `weight` in eval mode;
    `dim` is the weight dimension the norm's matrix has as rows (1: the output layer in the
    reference's transposed-convolution layout, ModelConfig.output_sn)."""
    matrix = np.moveaxis(weight, dim, 0).reshape(weight.shape[dim], -1).astype(np.float64)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    yield f"{prefix}.parametrizations.weight.original", weight
    yield f"{prefix}.parametrizations.weight.0._u", (u[:, 0] / s[0]).astype(np.float32)
    yield f"{prefix}.parametrizations.weight.0._v", vt[0].astype(np.float32)


def _conv(kernel: np.ndarray) -> np.ndarray:
    """TF Conv2D [kh, kw, in, out] -> PyTorch [out, in, kh, kw]."""
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def recover_state(tf: Any, graph_def: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """(ModelConfig, G's state dict as numpy) of a frozen reference generator."""
    from bigbigan.config import ModelConfig

    g = _Graph(tf, graph_def)
    state: dict[str, np.ndarray] = {}
    gathers = _weighted(g, "GatherV2", 0)
    if len(gathers) > 1:
        _expect("class embeddings", len(gathers), 1)
    conditional = bool(gathers)
    if conditional:
        state["G.embed.weight"] = gathers[0][1]

    cbns = _cbn_layers(g)
    _expect("conditional batch norms", len(cbns), 6)
    cbn_dense = {layer[k].name for layer in cbns for k in ("gamma", "beta")}
    dense = [(n, w) for n, w in _weighted(g, "MatMul", 1) if n.name not in cbn_dense]
    _expect("first Dense layers", len(dense), 1)
    dense_node, dense_w = dense[0]
    convs = _weighted(g, "Conv2D", 1)
    _expect("convolutions", len(convs), 13)
    out_convs = _weighted(g, "Conv2DBackpropInput", 1)
    _expect("transposed output convolutions", len(out_convs), 1)
    bns = g.of("FusedBatchNormV3")
    _expect("output batch norms", len(bns), 1)

    out_node, out_kernel = out_convs[0]
    ch, channels = out_kernel.shape[3], out_kernel.shape[2]
    chunk = dense_w.shape[0]
    cfg = ModelConfig(
        channels=int(channels),
        ch=int(ch),
        z_dim=4 * int(chunk),
        num_classes=int(state["G.embed.weight"].shape[0]) if conditional else 10,
        conditional=conditional,
        embed_dim=int(state["G.embed.weight"].shape[1]) if conditional else 32,
    )
    # the first Dense: NHWC columns (h, w, c) -> PyTorch's NCHW view (c, h, w)
    c4 = 4 * ch
    _expect("first Dense outputs", dense_w.shape[1], 16 * c4)
    perm = np.array([(j % 16) * c4 + j // 16 for j in range(16 * c4)])
    bias = _bias_of(g, dense_node)
    state.update(_spectral("G.dense", np.ascontiguousarray(dense_w.T[perm])))
    state["G.dense.bias"] = (bias if bias is not None else np.zeros(16 * c4, np.float32))[perm]

    for node, kernel in convs:
        name = _conv_role(g, node)
        if name in state or f"{name}.parametrizations.weight.original" in state:
            raise NotReference(f"two convolutions take the role of {name} ({node.name})")
        state.update(_spectral(name, _conv(kernel)))
        if name.startswith("G.attention."):
            bias = _bias_of(g, node)
            if bias is None:
                raise NotReference(f"attention convolution {node.name}: no bias")
            state[f"{name}.bias"] = bias
            if name == "G.attention.o":
                state["G.attention.gamma"] = _attention_gain(g, node)

    for layer in cbns:
        name = _cbn_role(g, layer["x"])
        state[f"{name}.bn.running_mean"] = layer["mean"]
        state[f"{name}.bn.running_var"] = layer["var_plus_eps"] - np.float32(1e-5)
        state[f"{name}.bn.num_batches_tracked"] = np.array(0, np.int64)
        for key in ("gamma", "beta"):
            node = layer[key]
            weight = g.value(g.const_input(node, 1))[0]
            state[f"{name}.{key}.weight"] = np.ascontiguousarray(weight.T)
            bias = _bias_of(g, node)
            state[f"{name}.{key}.bias"] = (
                bias if bias is not None else np.zeros(weight.shape[1], np.float32)
            )

    bn = bns[0]
    inputs = [g.const_input(bn, i) for i in (1, 2, 3, 4)]
    if not all(inputs):
        raise NotReference(f"batch norm {bn.name}: expected constant scale, offset, mean, var")
    scale, offset, mean, var = g.value(*inputs)
    eps = bn.attr["epsilon"].f
    state |= {
        "G.bn.weight": scale,
        "G.bn.bias": offset,
        "G.bn.running_mean": mean,
        "G.bn.running_var": var + np.float32(eps - 1e-3),
        "G.bn.num_batches_tracked": np.array(0, np.int64),
    }
    strides = list(out_node.attr["strides"].list.i)
    if strides != [1, 1, 1, 1] or out_node.attr["padding"].s != b"SAME":
        raise NotReference(f"output layer {out_node.name}: expected stride 1, SAME padding")
    # transposed conv [kh, kw, out, in], stride 1: conv with the kernel flipped, in/out swapped
    state.update(
        _spectral(
            "G.conv_out",
            np.ascontiguousarray(out_kernel[::-1, ::-1].transpose(2, 3, 0, 1)),
            dim=1 if cfg.output_sn == "transposed" else 0,
        )
    )
    return cfg, state


def recover_checkpoint(
    tf: Any,
    graph_def: Any,
    out: str | Path,
    *,
    feed: dict[str, np.ndarray],
    reference: np.ndarray,
    tolerance: float,
    source: dict[str, Any],
) -> RecoveryReport:
    """Recover G into a checkpoint directory `out`, verified against `reference` (the frozen
    graph's output on `feed`); E, F, H and J are left at their initialisation (untrained).
    `out` is written whole or not at all; an existing `out` is replaced only if it is itself a
    recovered checkpoint."""
    import shutil
    import tempfile

    import torch

    from bigbigan.config import to_dict
    from bigbigan.interface import diff_stats, offline_specs, torch_outputs
    from bigbigan.model.networks import BigBiGAN, offline_module
    from bigbigan.training import checkpoint

    out = Path(out)
    if out.exists():
        try:
            previous = checkpoint.read(out).extra.get("recovered_from")
        except BigBiGANError:
            previous = None
        if not previous:
            raise BigBiGANError(
                f"--checkpoint-out {out}: exists and is not a recovered checkpoint; "
                "choose a new directory"
            )
    cfg, state = recover_state(tf, graph_def)
    model = BigBiGAN(cfg)
    tensors = model.state_dict()
    wanted = {k for k in tensors if k.startswith("G.")}
    if set(state) != wanted:
        missing = sorted(wanted - set(state))[:3]
        raise NotReference(f"recovered no {', '.join(missing)} from the graph")
    for key, value in state.items():
        if tuple(value.shape) != tuple(tensors[key].shape):
            raise NotReference(
                f"{key}: the graph gives shape {list(value.shape)}, the reference architecture "
                f"{list(tensors[key].shape)}"
            )
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value)).to(tensors[key].dtype)
    model.load_state_dict(tensors)
    specs, _ = offline_specs(cfg)
    found = torch_outputs(offline_module(model), feed, specs)
    max_abs, mean_abs = diff_stats(found, reference)
    if not max_abs <= tolerance:
        raise NotReference(
            f"the recovered generator differs from the frozen graph by max abs {max_abs:.3g} > "
            f"{tolerance:g}: the graph is not the reference architecture as this reads it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        extra = {
            "recovered_from": source,
            "networks": "G recovered from the frozen graph; E, F, H, J untrained",
            "verification": {"max_abs_diff": max_abs, "mean_abs_diff": mean_abs},
        }
        checkpoint.save(staging, model, extra=extra)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RecoveryReport(out, max_abs, mean_abs, to_dict(cfg))
