"""int8 for AOTInductor: PT2E quantisation (torchao's X86InductorQuantizer), with the
convolutions kept in fp32 chosen by measurement as for ONNX Runtime (bigbigan.quantize.plan_int8).

Without VNNI oneDNN multiplies u8 x s8 with VPMADDUBSW, whose 16-bit pair sums saturate, so the
weights are 7-bit there (`int8_config`). Only the convolutions are quantised (as for ORT: they
hold the multiply-adds; the dense layers and the attention's matmul cost accuracy out of
proportion). Measuring a layer costs no calibration or conversion of its own: the model is
calibrated and converted once per calibration with every layer int8 and the weights' quantise
ops not yet folded (`calibrate`); a candidate is a copy in which the layers kept in fp32 skip
their quantise/dequantise pairs (`select`), run eagerly on the probe. (convert_pt2e alone takes
~30-70 s on 2 cores whatever the model: it traces ~100 conv/batch-norm QAT patterns.) The
package is compiled from the chosen candidate itself, its weights folded as convert_pt2e folds
them, and on an AVX2-only EPYC the eager simulation matched the compiled package
(docs/performance.md).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import operator
import time
from typing import Any

import numpy as np

from bigbigan.cpu import has_vnni, isa_class
from bigbigan.errors import BigBiGANError
from bigbigan.interface import TensorSpec, quiet_exporter
from bigbigan.quantize import SELECTION_MARGIN, Int8Plan, plan_int8
from bigbigan.runtimes.build import CompileJob, calibration_feeds, precision_limits, reference

# Activation observers tried, in order (ties keep the earlier): the quantizer's default
# histogram (minimises the quantisation error of each tensor) and plain min/max.
CALIBRATIONS = ("histogram", "minmax")
QUANTISED_OPS = ("conv2d",)  # aten op names


def import_pt2e() -> tuple[Any, Any, Any]:
    """torchao's PT2E quantisation (prepare, convert, x86 quantizer module), or a clear error."""
    logging.getLogger("torchao").setLevel(logging.ERROR)  # optional CUDA kernels it cannot load
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # its enum registration
    try:
        with quiet_exporter():
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as e:
        raise BigBiGANError(
            "int8 for target aoti needs torchao (PT2E quantisation): pip install torchao, "
            "or pip install 'bigbigan[perf]'"
        ) from e
    return prepare_pt2e, convert_pt2e, xiq


def int8_config(
    xiq: Any, calibration: str = CALIBRATIONS[0], flags: frozenset[str] | None = None
) -> Any:
    """X86InductorQuantizer's static config for a CPU with `flags` (default: this one): its
    defaults (activations uint8 per tensor, weights int8 per channel), activations observed by
    `calibration`, and 7-bit weights (-64..63) where the CPU has no VNNI. 7-bit weights rather
    than torchao's `reduce_range` (7-bit activations): on the shipped model, simulated, 5.0e-3
    vs 7.3e-3 with the same layers kept; compiled on an AVX2-only EPYC also 5.0e-3 (no
    saturation left)."""
    from torchao.quantization.pt2e import MinMaxObserver

    config = xiq.get_default_x86_inductor_quantization_config()
    if calibration == "minmax":
        ctr = MinMaxObserver.with_args(eps=2**-12)  # the default's eps
        activation = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=ctr)
        config = dataclasses.replace(
            config, input_activation=activation, output_activation=activation
        )
    if has_vnni(flags):
        return config
    weight = dataclasses.replace(config.weight, quant_min=-64, quant_max=63)
    return dataclasses.replace(config, weight=weight)


def int8_format(flags: frozenset[str] | None = None) -> dict[str, str]:
    """The sidecar's record of `int8_config`'s format on a CPU with `flags`."""
    weights = "-128..127" if has_vnni(flags) else "-64..63 (no VNNI: VPMADDUBSW saturates)"
    return {
        "quantiser": "torchao X86InductorQuantizer (PT2E)",
        "activations": "uint8 per tensor, 0..255",
        "weights": f"int8 per channel, symmetric, {weights}",
    }


def calibrate(graph: Any, calibration: str, feeds: list[tuple]) -> Any:
    """`graph` (an exported module, left as is) quantised with every layer int8: observers
    inserted, run over `feeds`, converted into quantise/dequantise pairs, the weights' not yet
    folded into int8 constants (so that `select` can restore any layer's fp32 weight)."""
    import torch

    prepare_pt2e, convert_pt2e, xiq = import_pt2e()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(int8_config(xiq, calibration))
    prepared = prepare_pt2e(copy.deepcopy(graph), quantizer)
    with torch.no_grad():
        for feed in feeds:
            prepared(*feed)
    return convert_pt2e(prepared, fold_quantize=False)


def _is_op(node: Any, name: str) -> bool:
    """Whether `node` calls the quantized_decomposed op `name` (`quantize_per`: any of them)."""
    return node.op == "call_function" and str(node.target).startswith(
        f"quantized_decomposed.{name}"
    )


def int8_layers(quantised: Any) -> dict[str, tuple[str, int]]:
    """The int8 layers of a `calibrate`d graph, in graph order: name (the module path,
    `generator.block1.conv2`) -> (node name, multiply-adds per sample)."""
    layers: dict[str, tuple[str, int]] = {}
    for node in quantised.graph.nodes:
        if getattr(node.target, "__name__", "").split(".")[0] not in QUANTISED_OPS:
            continue
        weight = node.args[1]
        if not _is_op(weight, "dequantize_per") or not _is_op(weight.args[0], "quantize_per"):
            continue
        stack = node.meta.get("nn_module_stack") or {"": (node.name, "")}
        name = list(stack.values())[-1][0]
        name = name if name not in layers else f"{name}#{node.name}"  # a module called twice
        fp32 = weight.args[0].args[0]
        shape = operator.attrgetter(fp32.target)(quantised).shape if fp32.op == "get_attr" else ()
        out = node.meta.get("val")
        spatial = int(np.prod(out.shape[2:])) if out is not None else 1
        layers[name] = (node.name, int(np.prod(shape)) * spatial)
    return layers


def select(quantised: Any, kept_fp32: list[str], fold: bool = False) -> Any:
    """A copy of a `calibrate`d graph in which only the QUANTISED_OPS layers outside
    `kept_fp32` (int8_layers names) stay int8: every other op's inputs skip their
    quantise/dequantise pairs. `fold` folds the int8 weights into constants, as convert_pt2e
    does, for Inductor."""
    from torchao.quantization.pt2e.constant_fold import constant_fold

    gm = copy.deepcopy(quantised)
    layers = int8_layers(gm)
    int8 = {node for name, (node, _) in layers.items() if name not in kept_fp32}
    for node in list(gm.graph.nodes):
        if node.name in int8 or _is_op(node, "quantize_per") or _is_op(node, "dequantize_per"):
            continue
        for dq in [n for n in node.all_input_nodes if _is_op(n, "dequantize_per")]:
            if _is_op(dq.args[0], "quantize_per"):
                node.replace_input_with(dq, dq.args[0].args[0])
    gm.graph.eliminate_dead_code()
    gm.recompile()
    if fold:
        constant_fold(gm, lambda node: _is_op(node, "quantize_per"))
    return gm


def feed_tensors(specs: list[TensorSpec], feed: dict[str, np.ndarray]) -> tuple:
    """A feed as the module's positional arguments (CPU tensors)."""
    import torch

    return tuple(torch.from_numpy(feed[spec.name]) for spec in specs)


def quantise_aoti(
    job: CompileJob,
    module: Any,
    args: tuple,
    dynamic_shapes: Any,
    probe: dict[str, np.ndarray],
    num_classes: int | None,
) -> tuple[Any, Int8Plan]:
    """`module` (the offline module of `job`, exported with `args` and `dynamic_shapes`)
    quantised for AOTInductor: calibrated once per calibration on `calibration_feeds` (labels
    below `num_classes`), the calibration and the convolutions kept in fp32 chosen by
    `plan_int8` on `probe` against the source ONNX. Returns the quantised module and the plan;
    refuses where the mean stays above the bound (with margin) with all but one convolution in
    fp32."""
    import torch

    target = SELECTION_MARGIN * precision_limits(job)[0]
    feeds = [feed_tensors(job.inputs, f) for f in calibration_feeds(job.inputs, num_classes)]
    graph = torch.export.export(module, args, dynamic_shapes=dynamic_shapes).module()
    started = time.perf_counter()
    quantised = {name: calibrate(graph, name, feeds) for name in CALIBRATIONS}
    calibrated = time.perf_counter()
    layers = int8_layers(quantised[CALIBRATIONS[0]])
    probe_args, expected = feed_tensors(job.inputs, probe), reference(job, probe)

    def measure(calibration: str, kept_fp32: list[str]) -> float:
        with torch.no_grad():
            found = select(quantised[calibration], kept_fp32)(*probe_args)
        return float(np.abs(found.numpy() - expected).mean())

    plan = Int8Plan(int8_format(), list(QUANTISED_OPS), CALIBRATIONS[0], target)
    macs = {name: n for name, (_, n) in layers.items()}
    plan_int8(measure, list(layers), macs, list(CALIBRATIONS), plan)
    plan.seconds = {  # calibration passes and conversions; every probe measurement
        "calibrate": round(calibrated - started, 1),
        "select": round(time.perf_counter() - calibrated, 1),
    }
    if plan.probe_mean > target:
        raise BigBiGANError(
            f"{job.out}: aoti int8 cannot stay within the int8 bounds (mean {target:.3g} with "
            f"margin) on this {isa_class()} CPU: with all but one convolution in fp32 the mean "
            f"is {plan.probe_mean:.3g}; nothing written"
        )
    plan.quantised = [name for name in layers if name not in plan.kept_fp32]
    return select(quantised[plan.calibration], plan.kept_fp32, fold=True), plan
