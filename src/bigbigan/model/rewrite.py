"""Exact rewrites of the generator that remove the work its upsampling causes.

Each generator block repeats every pixel 2x2 (nearest upsampling) and convolves the result:

- A 3x3 convolution of a pixel-repeated map sees only 2x2 distinct input pixels per output
  pixel, and which ones depends only on the output pixel's parity. That is a stride-2 4x4
  transposed convolution of the small map whose taps are sums of the 3x3 taps falling on the
  same input pixel: 16 instead of 36 multiply-adds per input pixel and channel pair, and no
  upsampled tensor in memory.
- A 1x1 convolution commutes with repeating pixels: convolve the small map, then repeat it,
  4x fewer multiply-adds.

Only the order of summation changes (differences at float rounding, about 1e-6 on pixels).
Two forms: `rewrite_upsampling` on an ONNX graph (target ort), where a pattern that does not
match exactly (another resize mode, padding, stride, a shared upsampled tensor, weights that are
not constants) is left alone; `fold_upsampling` on the PyTorch generator (target aoti).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bigbigan.model.blocks import UpBlock

# Row u of a 3x3 kernel applied to the 2x-repeated map lands on input row i-1, i or i+1 of the
# small map; for the transposed kernel's tap k (output row 2i + k - 1 from input row i):
# tap 0 <- u=2 (odd outputs), tap 1 <- u=1,2 (even), tap 2 <- u=0,1 (odd), tap 3 <- u=0 (even).
UPSAMPLED_TAPS = np.array([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=np.float64)

# (coordinate_transformation_mode, nearest_mode) pairs under which a 2x nearest resize repeats
# every pixel 2x2: asymmetric/floor is what torch.onnx writes for F.interpolate, the other is
# ONNX's default.
REPEATING_MODES = {("asymmetric", "floor"), ("half_pixel", "round_prefer_floor")}

CONV3X3_TO_TRANSPOSED = "upsample+conv3x3 -> conv_transpose4x4/2"
CONV1X1_BEFORE_UPSAMPLE = "upsample+conv1x1 -> conv1x1+upsample"


def transposed_kernel(weight: np.ndarray) -> np.ndarray:
    """The (Cin, Cout, 4, 4) stride-2 transposed kernel (padding 1) equal to nearest 2x
    upsampling followed by the (Cout, Cin, 3, 3) convolution `weight` (padding 1)."""
    taps = np.einsum("ku,lv,oiuv->iokl", UPSAMPLED_TAPS, UPSAMPLED_TAPS, weight)
    return taps.astype(weight.dtype)


class FoldedUpBlock(nn.Module):
    """An inference-only UpBlock with its upsampling folded into the convolutions: conv1 as a
    stride-2 transposed convolution of the small map, the skip's 1x1 before the upsampling."""

    def __init__(self, block: UpBlock) -> None:
        super().__init__()
        weight = block.conv1.weight.detach()  # plain: spectral norm already folded
        cout, cin = weight.shape[:2]
        self.bn1, self.bn2, self.conv2, self.skip = block.bn1, block.bn2, block.conv2, block.skip
        self.conv1 = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)
        folded = transposed_kernel(weight.cpu().double().numpy())
        self.conv1.weight.data = torch.from_numpy(folded).to(weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.bn1(x, c)))  # (B, Cout, 2H, 2W)
        h = self.conv2(F.relu(self.bn2(h, c)))
        return h + F.interpolate(self.skip(x), scale_factor=2, mode="nearest")


def fold_upsampling(module: nn.Module) -> Counter[str]:
    """Replace every UpBlock inside `module` (an offline module: eval mode, spectral norms
    folded) by its FoldedUpBlock, in place; returns the rewrites made, named as in the graph
    pass."""
    from torch.nn.utils import parametrize

    done: Counter[str] = Counter()
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, UpBlock):
                continue
            if parametrize.is_parametrized(child.conv1):
                raise ValueError("fold_upsampling needs plain weights: use offline_module first")
            setattr(parent, name, FoldedUpBlock(child))
            done[CONV3X3_TO_TRANSPOSED] += 1
            done[CONV1X1_BEFORE_UPSAMPLE] += 1
    return done


def rewrite_upsampling(model: Any) -> Counter[str]:
    """Rewrite every nearest-2x Resize feeding only a 3x3 or 1x1 Conv, in place (see the module
    docstring); returns how many of each rewrite were made. Weights left unused are dropped."""
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    taken = {*constants, *(name for node in graph.node for name in (*node.input, *node.output))}

    replaced: dict[int, list[Any]] = {}  # id(conv) -> the nodes that take its place
    done: Counter[str] = Counter()
    for resize in [n for n in graph.node if _repeats_2x(n, constants)]:
        users = consumers.get(resize.output[0], [])
        if len(users) != 1 or resize.output[0] in outputs:
            continue
        conv = users[0]
        kernel = _plain_conv_kernel(conv, constants)
        if kernel is None or conv.input[0] != resize.output[0]:
            continue
        small, weight, bias = resize.input[0], conv.input[1], list(conv.input[2:3])
        if kernel == 3:
            name = _unique(f"{weight}_transposed", taken)
            w = numpy_helper.to_array(constants[weight])
            constants[name] = numpy_helper.from_array(transposed_kernel(w), name)
            graph.initializer.append(constants[name])
            nodes = [
                helper.make_node(
                    "ConvTranspose",
                    [small, name, *bias],
                    list(conv.output),
                    name=f"{conv.name}_transposed",
                    kernel_shape=[4, 4],
                    strides=[2, 2],
                    pads=[1, 1, 1, 1],
                )
            ]
            done[CONV3X3_TO_TRANSPOSED] += 1
        else:
            mid = _unique(f"{conv.output[0]}_small", taken)
            low = helper.make_node("Conv", [small, weight, *bias], [mid], name=f"{conv.name}_small")
            low.attribute.extend(conv.attribute)
            up = helper.make_node("Resize", [mid, *resize.input[1:]], list(conv.output))
            up.name = f"{resize.name}_after"
            up.attribute.extend(resize.attribute)
            nodes = [low, up]
            done[CONV1X1_BEFORE_UPSAMPLE] += 1
        replaced[id(conv)] = nodes
        replaced[id(resize)] = []

    kept = [new for node in graph.node for new in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return done


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def _repeats_2x(node: Any, constants: dict[str, Any]) -> bool:
    """A Resize that repeats every pixel 2x2: nearest, constant scales (1, 1, 2, 2), no sizes."""
    from onnx import numpy_helper

    if node.op_type != "Resize" or len(node.input) != 3 or node.input[2] not in constants:
        return False
    a = _attributes(node)
    modes = (
        a.get("coordinate_transformation_mode", "half_pixel"),
        a.get("nearest_mode", "round_prefer_floor"),
    )
    scales = numpy_helper.to_array(constants[node.input[2]])
    return (
        a.get("mode") == "nearest"
        and modes in REPEATING_MODES
        and not a.get("antialias", 0)
        and scales.tolist() == [1.0, 1.0, 2.0, 2.0]
    )


def _plain_conv_kernel(node: Any, constants: dict[str, Any]) -> int | None:
    """3 or 1 for a stride-1, ungrouped, undilated Conv with constant weights and 'same'
    padding; None for anything else."""
    if node.op_type != "Conv" or node.input[1] not in constants:
        return None
    a = _attributes(node)
    shape = list(constants[node.input[1]].dims)
    if len(shape) != 4 or shape[2:] not in ([3, 3], [1, 1]):
        return None
    kernel = shape[2]
    same = [kernel // 2] * 4
    plain = (
        a.get("group", 1) == 1
        and a.get("strides", [1, 1]) == [1, 1]
        and a.get("dilations", [1, 1]) == [1, 1]
        and a.get("auto_pad", "NOTSET") == "NOTSET"
        and a.get("pads", [0, 0, 0, 0]) == same
    )
    return kernel if plain else None


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name_N`, not yet used in the graph (and now reserved)."""
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate
