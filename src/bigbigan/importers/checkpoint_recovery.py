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
Which node is which layer is bigbigan.importers.generator_layers' business; anything that does
not fit the reference architecture is refused as "not the reference generator". The result is
verified by running it in PyTorch against the frozen graph in TensorFlow on the same inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bigbigan.errors import BigBiGANError
from bigbigan.importers.generator_layers import (
    GraphView,
    NotReference,
    attention_gain,
    bias_of,
    cbn_layers,
    cbn_role,
    conv_role,
    expect,
    weighted,
)


@dataclass
class RecoveryReport:
    """Where the checkpoint went and how close it runs to the frozen graph."""

    directory: Path
    max_abs_diff: float  # PyTorch (recovered) vs TensorFlow (frozen graph)
    mean_abs_diff: float
    config: dict[str, Any]


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

    g = GraphView(tf, graph_def)
    gathers = weighted(g, "GatherV2", 0)
    if len(gathers) > 1:
        expect("class embeddings", len(gathers), 1)
    embed = gathers[0][1] if gathers else None

    cbns = cbn_layers(g)
    expect("conditional batch norms", len(cbns), 6)
    cbn_dense = {layer[k].name for layer in cbns for k in ("gamma", "beta")}
    dense = [(n, w) for n, w in weighted(g, "MatMul", 1) if n.name not in cbn_dense]
    expect("first Dense layers", len(dense), 1)
    convs = weighted(g, "Conv2D", 1)
    expect("convolutions", len(convs), 13)
    out_convs = weighted(g, "Conv2DBackpropInput", 1)
    expect("transposed output convolutions", len(out_convs), 1)
    bns = g.of("FusedBatchNormV3")
    expect("output batch norms", len(bns), 1)

    out_node, out_kernel = out_convs[0]
    cfg = ModelConfig(
        channels=int(out_kernel.shape[2]),
        ch=int(out_kernel.shape[3]),
        z_dim=4 * int(dense[0][1].shape[0]),
        num_classes=int(embed.shape[0]) if embed is not None else 10,
        conditional=embed is not None,
        embed_dim=int(embed.shape[1]) if embed is not None else 32,
    )
    state = {} if embed is None else {"G.embed.weight": embed}
    state |= _dense_state(g, *dense[0], cfg.ch)
    state |= _conv_states(g, convs)
    state |= _cbn_states(g, cbns)
    state |= _output_states(g, bns[0], out_node, out_kernel, cfg.output_sn)
    return cfg, state


def _dense_state(g: GraphView, node: Any, kernel: np.ndarray, ch: int) -> dict[str, np.ndarray]:
    """The first Dense, its NHWC columns (h, w, c) reordered to PyTorch's NCHW view (c, h, w)."""
    c4 = 4 * ch
    expect("first Dense outputs", kernel.shape[1], 16 * c4)
    perm = np.array([(j % 16) * c4 + j // 16 for j in range(16 * c4)])
    bias = bias_of(g, node)
    state = dict(_spectral("G.dense", np.ascontiguousarray(kernel.T[perm])))
    state["G.dense.bias"] = (bias if bias is not None else np.zeros(16 * c4, np.float32))[perm]
    return state


def _conv_states(g: GraphView, convs: list[tuple[Any, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every Conv2D by its role: the blocks' convolutions and the attention's (with its biases
    and gain)."""
    state: dict[str, np.ndarray] = {}
    for node, kernel in convs:
        name = conv_role(g, node)
        if f"{name}.parametrizations.weight.original" in state:
            raise NotReference(f"two convolutions take the role of {name} ({node.name})")
        state.update(_spectral(name, _conv(kernel)))
        if name.startswith("G.attention."):
            bias = bias_of(g, node)
            if bias is None:
                raise NotReference(f"attention convolution {node.name}: no bias")
            state[f"{name}.bias"] = bias
            if name == "G.attention.o":
                state["G.attention.gamma"] = attention_gain(g, node)
    return state


def _cbn_states(g: GraphView, cbns: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The conditional batch norms: statistics refolded for PyTorch's eps, gamma/beta Denses."""
    state: dict[str, np.ndarray] = {}
    for layer in cbns:
        name = cbn_role(g, layer["x"])
        state[f"{name}.bn.running_mean"] = layer["mean"]
        state[f"{name}.bn.running_var"] = layer["var_plus_eps"] - np.float32(1e-5)
        state[f"{name}.bn.num_batches_tracked"] = np.array(0, np.int64)
        for key in ("gamma", "beta"):
            node = layer[key]
            weight = g.value(g.const_input(node, 1))[0]
            state[f"{name}.{key}.weight"] = np.ascontiguousarray(weight.T)
            bias = bias_of(g, node)
            state[f"{name}.{key}.bias"] = (
                bias if bias is not None else np.zeros(weight.shape[1], np.float32)
            )
    return state


def _output_states(
    g: GraphView, bn: Any, out_node: Any, out_kernel: np.ndarray, output_sn: str
) -> dict[str, np.ndarray]:
    """The output layer: its batch norm (eps refolded from TF's to PyTorch's 1e-3) and its
    stride-1 transposed convolution as the equivalent ordinary one."""
    inputs = [g.const_input(bn, i) for i in (1, 2, 3, 4)]
    if not all(inputs):
        raise NotReference(f"batch norm {bn.name}: expected constant scale, offset, mean, var")
    scale, offset, mean, var = g.value(*inputs)
    eps = bn.attr["epsilon"].f
    state = {
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
            dim=1 if output_sn == "transposed" else 0,
        )
    )
    return state


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
